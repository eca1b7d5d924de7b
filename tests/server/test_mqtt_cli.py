"""`multipa-worker` and `multipa-server --broker` refuse a bad configuration at once:
``error [code]: sentence`` on stderr, exit status 2, before any model loads or any connection."""

from __future__ import annotations

import sys

import pytest

from multipa_server import cli, worker_cli


@pytest.fixture(autouse=True)
def no_models_no_environment(monkeypatch):
    """Every case here must fail before the models: importing them, or serving, fails the test."""
    for name in ("MULTIPA_BROKER", "MULTIPA_MQTT_USERNAME", "MULTIPA_MQTT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for module in ("torch", "multipa_core.asr", "multipa_core.assess", "multipa_core.pipeline"):
        monkeypatch.setitem(sys.modules, module, None)  # an import of it raises ImportError

    def no_serving(*args, **kwargs):
        raise AssertionError("got as far as serving")

    monkeypatch.setattr(cli, "serve", no_serving)
    monkeypatch.setattr(worker_cli, "_serve", no_serving)


def worker(capsys, *argv: str) -> str:
    assert worker_cli.main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err


def config_error(capsys, main, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error [config_error]: "), err
    return err


# --- multipa-worker --------------------------------------------------------------------


def test_worker_needs_a_broker(capsys):
    assert "--broker" in config_error(capsys, worker_cli.main)


def test_worker_reads_the_broker_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("MULTIPA_BROKER", "http://x")
    assert "invalid broker URL 'http://x'" in config_error(capsys, worker_cli.main)


@pytest.mark.parametrize("batch", ["0", "257", "-1"])
def test_worker_batch_out_of_range(capsys, batch):
    assert "--batch" in config_error(capsys, worker_cli.main, "--broker", "mqtt://127.0.0.1:1", "--batch", batch)


@pytest.mark.parametrize("url", ["http://x", "mqtt://h/path", "mqtt://h:port", "mqtt://"])
def test_worker_bad_broker_url(capsys, url):
    assert "invalid broker" in config_error(capsys, worker_cli.main, "--broker", url)


def test_worker_bad_prefix(capsys):
    assert "prefix" in config_error(capsys, worker_cli.main, "--broker", "mqtt://127.0.0.1:1", "--prefix", "a/#")


def test_worker_missing_ca_file(capsys, tmp_path):
    err = config_error(
        capsys, worker_cli.main, "--broker", "mqtts://127.0.0.1:1", "--ca-file", str(tmp_path / "missing.pem")
    )
    assert "TLS" in err


def test_worker_id_with_a_slash_fails_before_the_models(capsys):
    err = worker(capsys, "--broker", "mqtt://127.0.0.1:1", "--id", "a/b")
    assert err.startswith("error [") and "--id must be" in err


def test_worker_id_with_a_slash_is_a_config_error(capsys):
    config_error(capsys, worker_cli.main, "--broker", "mqtt://127.0.0.1:1", "--id", "a/b")


# --- multipa-server --broker -----------------------------------------------------------


def test_server_bad_broker_url(capsys):
    assert "invalid broker URL 'http://x'" in config_error(capsys, cli.main, "--broker", "http://x")


def test_server_reads_the_broker_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("MULTIPA_BROKER", "mqtt://h/path")
    assert "invalid broker URL" in config_error(capsys, cli.main)


@pytest.mark.parametrize("option, value", [("--max-attempts", "0"), ("--job-deadline", "0"), ("--job-deadline", "-1")])
def test_server_gateway_limits(capsys, option, value):
    assert option in config_error(capsys, cli.main, "--broker", "mqtt://127.0.0.1:1", option, value)


def test_server_bad_prefix(capsys):
    assert "prefix" in config_error(capsys, cli.main, "--broker", "mqtt://127.0.0.1:1", "--prefix", "$SYS")


def test_server_with_a_missing_ca_file_fails_at_start(capsys):
    from multipa_server import cli

    config_error(capsys, cli.main, "--broker", "mqtts://127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem")


# --- the environment: a bad MULTIPA_* value is one line and exit status 2, even for --help ---


@pytest.mark.parametrize("module", ["multipa_server.worker_cli", "multipa_server.cli", "multipa_core.cli"])
@pytest.mark.parametrize(
    "name, value",
    [
        ("MULTIPA_THREADS", "abc"),
        ("MULTIPA_THREADS", "-2"),
        ("MULTIPA_DEVICE", "gpu"),
        ("MULTIPA_BATCH", "0"),
        ("MULTIPA_ASR_TARGET", "/no/such/whisper"),
        ("MULTIPA_ASR_RECOGNIZED", "minilm-l6"),
    ],
)
def test_a_bad_environment_variable_is_a_config_error(module, name, value):
    import os
    import subprocess

    if module == "multipa_core.cli" and name in ("MULTIPA_THREADS", "MULTIPA_BATCH"):
        pytest.skip(
            "multipa's options read only MULTIPA_DEVICE, MULTIPA_ASR_* (and MULTIPA_DATA); its threads are read, and checked, as the models load"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTIPA_")}
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120, env={**env, name: value}
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.startswith("error [config_error]: ") and proc.stderr.count("\n") == 1, (
        proc.stderr
    )
    assert name in proc.stderr and "Traceback" not in proc.stderr


def test_worker_help_lists_the_batch_and_the_device(capsys):
    with pytest.raises(SystemExit) as info:
        worker_cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--batch" in out and "--device" in out and "MULTIPA_THREADS" in out
