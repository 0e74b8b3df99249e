import json
from tests.integration.test_rules_replay_influx import *
from tests.integration.test_rules_replay_influx import write_readings
from tests.integration.procs import run_campus

def test_x(settings, influx):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start_ms = int((now - timedelta(days=3)).timestamp() * 1000)
    write_readings(influx, start_ms)
    end_ms = start_ms + HOURS*60*MINUTE_MS
    for devs in ([GLOB], [], ["teach-1"], ["ahu-teach-1-1,ahu-nope"], ["nothing-*"]):
        args = ["rules","replay","--influx","--start",iso_ms(start_ms),"--end",iso_ms(end_ms)]
        for d in devs: args += ["--devices", d]
        p = run_campus(settings, *args)
        print("=== devices", devs, "rc", p.returncode)
        print(p.stdout[:3000]); print("ERR", p.stderr[-1500:])
    p = run_campus(settings, "rules","replay","--influx","--start",iso_ms(start_ms),"--end",iso_ms(end_ms),"--devices",GLOB,"--json")
    d = json.loads(p.stdout)
    print(json.dumps(d["firings"], indent=1)); print([ (e["rule"],e["device"],e["state"],e["ts"]) for e in d["events"]])
    print("fault", iso_ms(start_ms+FAULT_FROM*MINUTE_MS), iso_ms(start_ms+FAULT_TO*MINUTE_MS))
