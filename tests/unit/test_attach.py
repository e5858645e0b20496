"""Attach mode: the address, the key from an environment variable, the served model, and the CLI's
argument checks (a small local HTTP server stands in for vLLM's /v1/models)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboard.cli import build_parser, main
from dashboard.measure.attach import AttachError, api_key_from_env, attach, normalize_url

KEY = "sk-test-123"


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if self.path != "/v1/models":
            self.send_error(404)
            return
        if self.server.needs_key and self.headers.get("Authorization") != f"Bearer {KEY}":  # type: ignore[attr-defined]
            self.send_error(401)
            return
        body = json.dumps({"data": [{"id": "served-a", "max_model_len": 2048}, {"id": "served-b"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def models_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    server.needs_key = True  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_is_normalized_and_nonsense_is_refused_with_an_example():
    assert normalize_url("http://h:8000/v1/") == "http://h:8000"
    assert normalize_url(" https://h ") == "https://h"
    with pytest.raises(AttachError) as refused:
        normalize_url("localhost:8000")
    assert "http://host:8000" in str(refused.value)


def test_key_comes_from_the_named_variable_and_an_empty_one_is_named_in_the_error():
    assert api_key_from_env(None, {}) is None
    assert api_key_from_env("MY_KEY", {"MY_KEY": KEY}) == KEY
    with pytest.raises(AttachError) as refused:
        api_key_from_env("MY_KEY", {"MY_KEY": "  "})
    assert refused.value.params == {"name": "MY_KEY"}
    with pytest.raises(AttachError) as refused:
        api_key_from_env(KEY, {})  # the key itself typed where its variable's name belongs
    assert KEY not in str(refused.value)


def test_attach_names_the_first_served_model_and_sends_the_key(models_server):
    server = attach(models_server, "MY_KEY", environ={"MY_KEY": KEY})
    assert server.served_name == "served-a"
    assert server.models == ("served-a", "served-b")
    assert server.max_model_len == 2048
    assert server.api_key == KEY
    assert KEY not in json.dumps(server.describe())


def test_attach_refuses_a_wrong_key_a_missing_model_and_a_silent_address(models_server):
    with pytest.raises(AttachError, match="refused the API key"):
        attach(models_server, "MY_KEY", environ={"MY_KEY": "wrong"})
    with pytest.raises(AttachError, match="does not serve"):
        attach(models_server, "MY_KEY", model="other", environ={"MY_KEY": KEY})
    with pytest.raises(AttachError, match="No server answers"):
        attach("http://127.0.0.1:9", timeout=2)


def test_the_cli_has_no_option_that_takes_a_key_on_the_command_line():
    parser = build_parser("en")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--url", "http://h:1", "--api-key", KEY, "--preset", "pika"])
    args = parser.parse_args(["bench", "--url", "http://h:1", "--api-key-env", "K", "--preset", "pika"])
    assert (args.url, args.api_key_env) == ("http://h:1", "K")
    args = parser.parse_args(["probe", "--url", "http://h:1", "--preset", "pika", "--json", "x.json"])
    assert args.url == "http://h:1"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bench", "--preset", "pika", "--api-key-env", "K"], "--api-key-env goes with --url"),
        (["probe", "--preset", "pika", "--api-key-env", "K", "--json", "x.json"], "goes with --url"),
        (["bench", "--url", "nonsense", "--preset", "pika"], "http://host:8000"),
        (["bench", "--url", "http://h:1", "--preset", "pika", "--set", "max_num_seqs=4"], "--set"),
        (["bench", "--url", "http://h:1"], "--preset NAME or --input-tokens N"),
        (["bench", "--url", "http://h:1", "--preset", "pika", "--shape", "constant"], "needs --rate"),
        (["bench", "--url", "http://h:1", "--preset", "pika", "--rate", "2"], "--rate only goes"),
        (["bench", "--url", "http://h:1", "--preset", "pika", "--ttft-limit", "-5"], "positive"),
        (
            ["bench", "--url", "http://h:1", "--preset", "pika", "--shape", "throughput", "--duration", "5"],
            "do not fit together",
        ),
    ],
)
def test_bench_refuses_bad_attach_and_shape_arguments_before_sending_anything(argv, expected, capsys):
    code = main(["--lang", "en", *argv, *(["--no-history"] if argv[0] == "bench" else [])])
    assert code != 0
    assert expected in capsys.readouterr().err


def test_an_unset_key_variable_is_named_in_the_users_language(monkeypatch, capsys, models_server):
    monkeypatch.delenv("LEGO_TEST_KEY", raising=False)
    code = main(["--lang", "en", "bench", "--url", models_server, "--api-key-env", "LEGO_TEST_KEY",
                 "--preset", "pika", "--no-history"])  # fmt: skip
    assert code != 0
    assert "LEGO_TEST_KEY" in capsys.readouterr().err
