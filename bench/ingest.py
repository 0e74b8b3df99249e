"""Ingest benchmark: sustained readings/s, latency, CPU per reading and memory,
with the ceilings of the parts alone measured in the same run.

Everything runs on this machine against a real Mosquitto and a real influxd
started on free ports. Publishers fill the broker's queue for the ingester's
offline persistent session first (several processes, so publishing is never
the bottleneck of the measured phase); then the ingester is started and timed
until InfluxDB holds every reading. Phases:

  bare      a bare paho-mqtt QoS 1 subscriber that only decodes JSON (ceiling)
  influxd   one writer posting the same line protocol to influxd (ceiling; best of 3)
  single    one `campus ingest`, one reading per message
  batch60   one `campus ingest`, batch payloads of 60 readings per message
  garbage   like single, with one bad message (malformed, unknown topic, 1 in 200
            of 300 kB) after every good one: the good half's rate
  two       two `campus ingest` processes sharing the subscription
  spool     a 1,000,000-reading backlog spooled while influxd is down, then replayed
  latency   publish-to-stored latency at a steady publish rate (probes)

    .venv/bin/python bench/ingest.py [--readings 200000] [--phases ...] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from campus.influx import InfluxClient  # noqa: E402
from campus.registry import load_campus  # noqa: E402
from campus.stack import Influxd, Mosquitto, free_port  # noqa: E402

T0_MS = 1_790_000_000_000  # 2026-09-21: a fixed event time for every run


def _devices() -> list[tuple[str, str]]:
    campus = load_campus(ROOT / "config" / "campus.yaml")
    return [(d.topic, d.id) for d in campus if d.kind == "power"]


GARBAGE = [
    ("campus/teach-1/power/pm-teach-1-f1", b'{"ts": 1, "metrics": {'),
    ("campus/teach-1/nonsense/dev", b'{"metrics": {"a": 1}}'),
    ("campus/only/three", b'{"metrics": {"a": 1}}'),
]
OVERSIZED = ("campus/teach-1/power/pm-teach-1-f1", b"x" * 300_000)  # one in 200


def _payloads(
    n: int, per_message: int, worker: int, workers: int, garbage: bool = False
) -> list[tuple[str, bytes]]:
    """This worker's share of ``n`` readings of the power meters, as MQTT messages
    (with ``garbage``, one bad message after every good one)."""
    devices = _devices()
    out = []
    per_dev = max(1, n // len(devices))
    for di, (topic, _) in enumerate(devices):
        if di % workers != worker:
            continue
        readings = [
            {"ts": T0_MS + k * 1000, "seq": k, "metrics": _metrics(k)} for k in range(per_dev)
        ]
        if per_message == 1:
            for k, r in enumerate(readings):
                out.append((topic, json.dumps(r).encode()))
                if garbage:
                    out.append(OVERSIZED if k % 200 == 199 else GARBAGE[k % len(GARBAGE)])
        else:
            for i in range(0, len(readings), per_message):
                out.append(
                    (topic, json.dumps({"readings": readings[i : i + per_message]}).encode())
                )
    return out


def _metrics(k: int) -> dict[str, float]:
    """Plausible power-meter values (inside the registry's valid ranges)."""
    kw = 40.0 + (k * 7919) % 600 / 10
    return {
        "power_kw": kw,
        "energy_kwh": 100_000.0 + k * 0.75,
        "voltage_v": 380.0 + k % 7,
        "current_a": round(kw * 1.6, 2),
        "power_factor": 0.9 + (k % 9) / 100,
    }


def _publish_worker(args: tuple[str, int, int, int, int, int, bool]) -> int:
    host, port, n, per_message, worker, workers, garbage = args
    msgs = _payloads(n, per_message, worker, workers, garbage)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{worker}-{time.time_ns()}")
    c.max_inflight_messages_set(1000)
    c.connect(host, port)
    c.loop_start()
    infos: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
    for t, p in msgs:
        infos.append(c.publish(t, p, qos=1))
        if len(infos) > 20_000:  # message ids wrap at 65,535
            infos.popleft().wait_for_publish(300)
    for i in infos:
        i.wait_for_publish(300)
    c.disconnect()
    c.loop_stop()
    return len(msgs)


def publish(
    broker: Mosquitto, n: int, per_message: int = 1, workers: int = 2, garbage: bool = False
) -> tuple[int, float]:
    """Publish ``n`` readings with several processes; (messages, seconds)."""
    t = time.monotonic()
    jobs = [(broker.host, broker.port, n, per_message, w, workers, garbage) for w in range(workers)]
    with mp.Pool(workers) as pool:
        sent = sum(pool.map(_publish_worker, jobs))
    return sent, time.monotonic() - t


def _session(broker: Mosquitto, client_id: str, topic: str) -> None:
    """Create a persistent session subscribed to ``topic``, then leave."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=False, properties=p)
    c.loop_start()
    r = c.subscribe(topic, qos=1)
    time.sleep(0.5)
    assert r[0] == 0
    c.disconnect()
    c.loop_stop()


def _drop_session(broker: Mosquitto, client_id: str) -> None:
    """End a phase's persistent session, or the broker keeps queueing every later
    phase's messages for it (and saving them all at every autosave)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 0
    c.connect(broker.host, broker.port, clean_start=True, properties=p)
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, every process,
    the kernel's network work included), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stored_direct(http: httpx.Client, port: int) -> int:
    """Points an ingester reports written to InfluxDB, from its /metrics.

    One client for the whole phase: ``httpx.get`` builds a TLS context for every
    call (about 30 ms of CPU), which at ten polls a second took a fifth of a
    core from the machine being measured; a kept client costs about 1 ms."""
    try:
        text = http.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "identity"}, timeout=2
        ).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        if line.startswith('campus_ingest_points_stored_total{path="direct"}'):
            return int(float(line.split()[-1]))
    return 0


def _count(client: InfluxClient) -> int:
    try:
        return client.count("power")
    except Exception:
        return 0


class Bench:
    def __init__(self, tmp: Path, profile: Path | None = None) -> None:
        self.tmp = tmp
        self.profile = profile
        self.influxd = Influxd(tmp / "influxd", free_port())
        self.broker = Mosquitto(tmp / "mosquitto", free_port())
        self.influxd.start(timeout=60)
        self.broker.start()
        self.results: dict[str, dict[str, float]] = {}

    def close(self) -> None:
        self.broker.stop()
        self.influxd.stop()

    def env(self, db: str, client_id: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "CAMPUS_MQTT_URL": self.broker.url,
                "CAMPUS_INFLUX_URL": self.influxd.url,
                "CAMPUS_INFLUX_DB": db,
                "CAMPUS_VAR_DIR": str(self.tmp / f"var-{client_id}"),
                "CAMPUS_CONFIG_DIR": str(ROOT / "config"),
                "CAMPUS_INGEST_CLIENT_ID": client_id,
                "CAMPUS_INGEST_GROUP": db,
                "CAMPUS_LOG_LEVEL": "WARNING",
                "CAMPUS_INGEST_METRICS_PORT": "0",
                "CAMPUS_INGEST_GAP_DETECTION": "false",
            }
        )
        env.update(extra)
        return env

    # -------------------------------------------------------------- phases

    def bare(self, n: int) -> None:
        """A minimal paho subscriber: receive, json.loads, auto-ack. Ceiling of paho."""
        cid = "bench-bare"
        _session(self.broker, cid, "$share/bare/campus/#")
        sent, _ = publish(self.broker, n)
        done = mp.Event()
        count = mp.Value("i", 0)
        proc = mp.Process(
            target=_bare_sub, args=(self.broker.host, self.broker.port, cid, sent, count, done)
        )
        t = time.monotonic()
        proc.start()
        done.wait(600)
        secs = time.monotonic() - t
        proc.join(10)
        _drop_session(self.broker, cid)
        self.results["bare"] = {
            "readings": count.value,
            "seconds": secs,
            "per_s": count.value / secs,
        }

    def influx_ceiling(self, n: int, passes: int = 3) -> None:
        """One writer posting 5000-line batches of the same points to influxd, tagged
        as the ingester tags them: the best of ``passes`` passes, each into a
        fresh database."""
        from campus.lineprotocol import point

        campus = load_campus(ROOT / "config" / "campus.yaml")
        lines = []
        for _, dev in _devices():
            spec = campus.get(dev)
            assert spec is not None
            tags = spec.influx_tags()
            for k in range(max(1, n // 129)):
                lines.append(point("power", tags, _metrics(k), T0_MS + k * 1000))
        best = float("inf")
        for p in range(passes):
            client = InfluxClient(self.influxd.url, f"ceiling{p}")
            client.create_database()
            t = time.monotonic()
            for i in range(0, len(lines), 5000):
                client.write(lines[i : i + 5000])
            best = min(best, time.monotonic() - t)
            client.close()
        self.results["influxd"] = {
            "readings": len(lines),
            "passes": passes,
            "seconds": best,
            "per_s": len(lines) / best,
        }

    def ingest(
        self, name: str, n: int, per_message: int = 1, processes: int = 1, garbage: bool = False
    ) -> None:
        """`campus ingest` draining a backlog of ``n`` readings."""
        db = f"b{name}"
        ids = [f"bench-{name}-{i}" for i in range(processes)]
        for cid in ids:
            _session(self.broker, cid, f"$share/{db}/campus/#")
        _, pub_s = publish(self.broker, n, per_message, garbage=garbage)
        client = InfluxClient(self.influxd.url, db)
        want = (n // 129) * 129
        t = time.monotonic()
        ports = [free_port() for _ in ids]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "campus.cli", "ingest"],
                env=self.env(db, cid, CAMPUS_INGEST_METRICS_PORT=str(port)),
                cwd=ROOT,
            )
            for cid, port in zip(ids, ports, strict=True)
        ]
        spies = [self._profile(f"{name}-{i}", p.pid) for i, p in enumerate(procs)]
        cpu0 = [0.0] * processes
        rss = [0.0] * processes
        cpu = [0.0] * processes
        first: tuple[float, int] | None = None  # when the first points were stored, and how many
        servers0 = self._server_cpu()
        machine0 = _machine_busy_seconds()
        stored = 0
        http = httpx.Client()
        while time.monotonic() - t < 900:
            for i, p in enumerate(procs):
                cpu[i] = _cpu_seconds(p.pid)
                rss[i] = max(rss[i], _peak_rss_mib(p.pid))
            # the ingesters' own count (cheap), so polling does not load influxd
            each = [_stored_direct(http, port) for port in ports]
            stored = sum(each)
            # sustained: timed once every process is storing (one starting later
            # would otherwise count its start-up against the rate of all)
            if first is None and all(n > 0 for n in each):
                first = (time.monotonic(), stored)
                cpu0 = [_cpu_seconds(p.pid) for p in procs]
                servers0 = self._server_cpu()
                machine0 = _machine_busy_seconds()
            if stored >= want:
                break
            time.sleep(0.1)
        end = time.monotonic()
        http.close()
        servers = [b - a for a, b in zip(servers0, self._server_cpu(), strict=True)]
        machine = _machine_busy_seconds() - machine0
        held = _count(client)  # what InfluxDB holds decides what was lost
        for spy in spies:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(60)
        for cid in ids:
            _drop_session(self.broker, cid)
        client.close()
        t_first, n_first = first or (end, 0)
        total_cpu = sum(c - c0 for c, c0 in zip(cpu, cpu0, strict=True))
        self.results[name] = {
            "readings": held,
            "seconds": end - t,
            "startup_s": t_first - t,
            # sustained: from the first points stored to the last, start-up excluded
            "per_s": (stored - n_first) / max(end - t_first, 1e-9),
            "cpu_us_per_reading": total_cpu / max(stored - n_first, 1) * 1e6,
            # cores busy while draining: is the broker or influxd the limit?
            "broker_cores": servers[0] / max(end - t_first, 1e-9),
            "influxd_cores": servers[1] / max(end - t_first, 1e-9),
            # the whole machine (of os.cpu_count() cores): is it the limit?
            "machine_cores": machine / max(end - t_first, 1e-9),
            "peak_rss_mib": max(rss),
            "publish_s": pub_s,
            "lost": want - held,
        }

    def _server_cpu(self) -> list[float]:
        """CPU seconds used so far by the broker and influxd."""
        return [_cpu_seconds(s.proc.pid) for s in (self.broker, self.influxd) if s.proc]

    def _profile(self, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        """py-spy sampling ``pid`` into the profile folder, when one was asked for."""
        if self.profile is None:
            return None
        self.profile.mkdir(parents=True, exist_ok=True)
        out = self.profile / f"{name}.txt"
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--threads"]
        return subprocess.Popen([*cmd, "--rate", "200", "--output", str(out)])

    def spool(self, n: int) -> None:
        """A backlog of ``n`` readings spooled while influxd is down, then replayed."""
        db, cid = "bspool", "bench-spool"
        _session(self.broker, cid, f"$share/{db}/campus/#")
        self.influxd.stop()
        publish(self.broker, n, per_message=60)
        want = (n // 129) * 129
        env = self.env(db, cid, CAMPUS_INGEST_METRICS_PORT=str(free_port()))
        t = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "campus.cli", "ingest"], env=env, cwd=ROOT)
        spool_dir = self.tmp / f"var-{cid}" / "spool"
        rss = 0.0
        last, still = -1, 0
        while still < 8 and time.monotonic() - t < 900:  # spooled when the size settles
            time.sleep(0.5)
            rss = max(rss, _peak_rss_mib(proc.pid))
            size = sum(f.stat().st_size for f in spool_dir.glob("*.seg"))
            still = still + 1 if size == last and size > 0 else 0
            last = size
        spooled_s = time.monotonic() - t
        self.influxd.start(timeout=60)
        client = InfluxClient(self.influxd.url, db)
        t = time.monotonic()
        while _count(client) < want and time.monotonic() - t < 900:
            rss = max(rss, _peak_rss_mib(proc.pid))
            time.sleep(0.5)
        replay_s = time.monotonic() - t
        stored = _count(client)
        rss = max(rss, _peak_rss_mib(proc.pid))
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        _drop_session(self.broker, cid)
        client.close()
        self.results["spool"] = {
            "readings": stored,
            "spool_bytes": last,
            "spooled_s": spooled_s,
            "replay_s": replay_s,
            "replay_per_s": stored / replay_s,
            "peak_rss_mib": rss,
            "lost": want - stored,
        }

    def latency(self, rate: float, seconds: float) -> None:
        """Probes at a steady total publish rate; publish-to-stored latency."""
        db, cid = f"blatency{int(rate)}", f"bench-latency-{int(rate)}"
        client = InfluxClient(self.influxd.url, db)
        proc = subprocess.Popen(
            [sys.executable, "-m", "campus.cli", "ingest"],
            env=self.env(db, cid, CAMPUS_INGEST_FLUSH_INTERVAL_S="0.1"),
            cwd=ROOT,
        )
        # Steady state: wait until a first probe is stored (the ingester is
        # connected and influxd has created the shard) before timing any.
        warm = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency-warm")
        warm.connect(self.broker.host, self.broker.port)
        warm.loop_start()
        warm_ts = int(time.time() * 1000) - 1000
        warm_probe = [(warm_ts, time.monotonic())]
        warm_found: dict[int, float] = {}
        deadline = time.monotonic() + 60
        while not warm_found and time.monotonic() < deadline:
            warm.publish(
                "campus/plant/power/bench-probe",
                json.dumps({"ts": warm_ts, "metrics": {"power_kw": 1.0}}),
                qos=1,
            )
            time.sleep(0.5)
            self._poll_probes(client, warm_probe, warm_found)
        warm.disconnect()
        warm.loop_stop()
        # The load comes from worker processes (one paho publisher manages only a
        # few thousand QoS 1 messages a second); this process publishes the probes.
        workers = 2
        pool = mp.Pool(workers)
        load = pool.map_async(
            _paced_worker,
            [
                (self.broker.host, self.broker.port, rate / workers, seconds, w)
                for w in range(workers)
            ],
        )
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency-pub")
        pub.connect(self.broker.host, self.broker.port)
        pub.loop_start()
        probes: list[tuple[int, float]] = []
        found: dict[int, float] = {}
        t0 = next_probe = time.monotonic()
        while time.monotonic() - t0 < seconds:
            if time.monotonic() >= next_probe:  # a probe every 100 ms, polled every 20 ms
                ts = int(time.time() * 1000)
                pub.publish(
                    "campus/plant/power/bench-probe",
                    json.dumps({"ts": ts, "metrics": {"power_kw": 1.0}}),
                    qos=1,
                )
                probes.append((ts, time.monotonic()))
                next_probe += 0.1
            self._poll_probes(client, probes, found)
            time.sleep(0.02)
        sent = sum(load.get(120))
        pool.close()
        deadline = time.monotonic() + 10
        while len(found) < len(probes) and time.monotonic() < deadline:
            self._poll_probes(client, probes, found)
            time.sleep(0.02)
        pub.disconnect()
        pub.loop_stop()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        _drop_session(self.broker, cid)
        client.close()
        lat = sorted(found[ts] - at for ts, at in probes if ts in found)
        self.results[f"lat{int(rate)}"] = {
            "rate": rate,
            "published_per_s": sent / seconds,
            "probes": len(probes),
            "stored_probes": len(lat),
            "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
            "max_ms": lat[-1] * 1000 if lat else float("nan"),
        }

    @staticmethod
    def _poll_probes(
        client: InfluxClient, probes: list[tuple[int, float]], found: dict[int, float]
    ) -> None:
        pending = [ts for ts, _ in probes if ts not in found]
        if not pending:
            return
        try:
            series = client.query(
                "SELECT power_kw FROM power WHERE device = 'bench-probe' "
                f"AND time >= {min(pending)}ms"
            )
        except Exception:
            return
        now = time.monotonic()
        for s in series:
            for ts, _ in s["values"]:
                found.setdefault(ts, now)


def _paced_worker(args: tuple[str, int, float, float, int]) -> int:
    """Publish one-reading messages at ``rate`` for ``seconds``; how many were sent."""
    host, port, rate, seconds, worker = args
    devices = _devices()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-load-{worker}-{time.time_ns()}")
    c.max_inflight_messages_set(1000)
    c.connect(host, port)
    c.loop_start()
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        topic, _ = devices[(k * 2 + worker) % len(devices)]
        ts = int(time.time() * 1000) - 60_000 + k % 1000  # in the past, unique per device
        c.publish(topic, json.dumps({"ts": ts, "metrics": {"power_kw": 1.0 + k}}), qos=1)
        k += 1
        if k % 50 == 0:
            time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
    c.disconnect()
    c.loop_stop()
    return k


def _bare_sub(host: str, port: int, cid: str, want: int, count, done) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)

    def on_message(client, userdata, msg):
        json.loads(msg.payload)
        count.value += 1
        if count.value >= want:
            done.set()

    c.on_message = on_message
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    p.ReceiveMaximum = 10000
    c.connect(host, port, clean_start=False, properties=p)
    c.loop_start()
    done.wait(600)
    c.disconnect()
    c.loop_stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--phases", default="bare,influxd,single,garbage,batch60,two,spool,latency")
    ap.add_argument(
        "--latency-rates",
        default="2500,5000",
        help="publish rates (readings/s) to measure latency at",
    )
    ap.add_argument(
        "--latency-seconds",
        type=float,
        default=60,
        help="how long each latency phase publishes (a probe every 100 ms)",
    )
    ap.add_argument("--spool-readings", type=int, default=1_000_000)
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the compared phases this many times, interleaved, and print each"
        " ratio's median over the rounds (the VM's speed drifts between phases)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        help="sample each ingester with py-spy into this folder (collapsed stacks, one per phase)",
    )
    args = ap.parse_args()
    phases = args.phases.split(",")
    bench = Bench(Path(tempfile.mkdtemp(prefix="bench-ingest-")), args.profile)
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        for k in range(args.rounds):
            bench.results = {}
            for ph in phases:
                if k and ph in ONCE:
                    continue
                print(
                    f"... {ph}" + (f" (round {k + 1})" if args.rounds > 1 else ""),
                    file=sys.stderr,
                    flush=True,
                )
                run_phase(bench, ph, args)
            rounds.append(bench.results)
    finally:
        bench.close()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    for k, r in enumerate(rounds):
        for name, figures in r.items():
            label = f"{name}#{k + 1}" if len(rounds) > 1 else name
            print(
                f"{label:8} "
                + "  ".join(
                    f"{key}={v:,.1f}" if isinstance(v, float) else f"{key}={v:,}"
                    for key, v in figures.items()
                )
            )
    for label, num, den in RATIOS:
        each = [r[num]["per_s"] / r[den]["per_s"] for r in rounds if num in r and den in r]
        if each:
            spread = f" (rounds: {', '.join(f'{v:.2f}' for v in each)})" if len(each) > 1 else ""
            print(f"{label}: {statistics.median(each):.2f}{spread}")


ONCE = ("bare", "spool", "latency")
"""Phases a second round does not repeat: no ratio pairs them within a round."""

RATIOS = [
    ("single / bare paho subscriber", "single", "bare"),
    ("batch60 / influxd single writer", "batch60", "influxd"),
    ("good readings/s with half garbage / without", "garbage", "single"),
    ("two / single", "two", "single"),
]
"""Ratios printed, each of two phases of the same round (median over rounds)."""


def run_phase(bench: Bench, ph: str, args: argparse.Namespace) -> None:
    if ph == "bare":
        bench.bare(args.readings)
    elif ph == "influxd":
        bench.influx_ceiling(args.readings * 3)  # the volume of batch60
    elif ph == "single":
        bench.ingest("single", args.readings)
    elif ph == "batch60":
        bench.ingest("batch60", args.readings * 3, per_message=60)
    elif ph == "garbage":
        bench.ingest("garbage", args.readings, garbage=True)
    elif ph == "two":
        bench.ingest("two", args.readings, processes=2)
    elif ph == "spool":
        bench.spool(args.spool_readings)
    elif ph == "latency":
        for rate in args.latency_rates.split(","):
            bench.latency(float(rate), args.latency_seconds)
    else:
        raise SystemExit(f"unknown phase {ph!r}")


if __name__ == "__main__":
    main()
