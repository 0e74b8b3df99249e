"""The installed environment is the one the code was written against."""

from __future__ import annotations

import importlib.metadata

import urllib3


def test_urllib3_is_urllib3_not_the_fork_niquests_brings() -> None:
    """grafana-client's niquests pulls in urllib3-future, whose wheel replaces
    the urllib3 package (requests, selenium and schemathesis run on it then);
    `make setup` builds it from source beside urllib3 instead (Makefile)."""
    assert urllib3.__version__ == importlib.metadata.version("urllib3"), (
        f"import urllib3 gives {urllib3.__version__} from {urllib3.__file__}: urllib3-future "
        "replaced it; reinstall with URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future"
    )
