"""Start the factory's web app the way ./run.sh does.

    python -m dashboard.ui.launch [--share] [streamlit options...]

Private by default: the app listens on 127.0.0.1 only, and the person at this computer is the
presenter. With --share (or LEGO_FACTORY_SHARE=1) it listens on the network for a class and prints a
presenter link with a fresh random key; the key reaches the app through this process's environment,
never a command line. Before the web server starts, servers left behind by an earlier app are reaped,
and SIGHUP (a closed terminal) stops every server like Ctrl-C does.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import psutil

from dashboard.classroom import roles
from dashboard.engine import lifecycle

APP = Path(__file__).resolve().parents[1] / "app.py"
DEFAULT_PORT = 8501


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="run.sh", add_help=True)
    parser.add_argument(
        "--share",
        action="store_true",
        help="listen on the network for a class and print a presenter link (also LEGO_FACTORY_SHARE=1)",
    )
    return parser.parse_known_args(argv)


def option_value(rest: list[str], name: str) -> str | None:
    """The value of a streamlit option given as `--name value` or `--name=value`."""
    for index, word in enumerate(rest):
        if word == name and index + 1 < len(rest):
            return rest[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def network_addresses() -> list[str]:
    """This computer's IPv4 addresses that other machines can reach (not loopback)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                found.append(address.address)
    return sorted(set(found))


def streamlit_argv(share: bool, rest: list[str]) -> list[str]:
    argv = ["streamlit", "run", str(APP)]
    if option_value(rest, "--server.address") is None:
        argv += ["--server.address", "0.0.0.0" if share else "127.0.0.1"]
    return argv + rest


def announce(share: bool, port: int, key: str | None) -> None:
    if not share:
        print(f"==> The factory is open on this computer only: http://127.0.0.1:{port}", flush=True)
        print("    (for a class: ./run.sh --share)", flush=True)
        return
    print("==> The factory is shared on the network. Visitors open:", flush=True)
    for address in network_addresses() or ["ADDRESS"]:
        print(f"      http://{address}:{port}", flush=True)
    print("    Presenter link (keep it to yourself; a new key every start):", flush=True)
    for address in network_addresses() or ["ADDRESS"]:
        print(f"      {roles.presenter_link(address, port, key or '')}", flush=True)


def prepare(share: bool) -> str | None:
    """Set the environment the app reads; the presenter key when shared."""
    os.environ[roles.SHARE_ENV] = "1" if share else "0"
    key = roles.new_presenter_key() if share else None
    roles.set_presenter_key(key)  # kept in this process's memory: never in an environment or argv
    return key


def main(argv: list[str] | None = None) -> int:
    args, rest = parse(list(sys.argv[1:] if argv is None else argv))
    share = args.share or roles.is_shared()
    key = prepare(share)
    reaped = lifecycle.reap_leftovers()
    if reaped:
        print(f"==> Stopped {len(reaped)} process(es) of a server an earlier app left running.", flush=True)
    lifecycle.rotate_logs(lifecycle.app_runs_dir())
    lifecycle.install_hangup_handler()
    port = int(option_value(rest, "--server.port") or DEFAULT_PORT)
    announce(share, port, key)
    from streamlit.web import cli as streamlit_cli

    sys.argv = streamlit_argv(share, rest)
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main())
