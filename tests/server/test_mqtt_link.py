"""Broker URLs and TLS settings: what ``--broker`` and its companion options turn into."""

from __future__ import annotations

import ssl

import pytest

from multipa_server.exceptions import ConfigError
from multipa_server.mqtt_link import BrokerOptions, broker_options, tls_context
from multipa_server.mqtt_protocol import DEFAULT_PREFIX


def config_error(url: str, **fields) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        broker_options(url, **fields)
    assert info.value.code == "config_error"
    return info.value


def test_plain_url_with_a_port():
    options = broker_options("mqtt://h:1234")
    assert (options.host, options.port, options.tls) == ("h", 1234, False)
    assert (options.username, options.password, options.prefix) == (None, None, DEFAULT_PREFIX)
    assert options.url == "mqtt://h:1234"


def test_mqtts_means_tls_on_port_8883():
    options = broker_options("mqtts://h")
    assert (options.host, options.port, options.tls) == ("h", 8883, True)
    assert options.url == "mqtts://h:8883"


def test_tls_flag_on_a_plain_url_changes_the_default_port_only():
    assert (broker_options("mqtt://h", tls=True).port, broker_options("mqtt://h", tls=True).tls) == (8883, True)
    assert broker_options("mqtt://h:1883", tls=True).port == 1883


def test_a_url_without_a_scheme_is_plain_mqtt():
    options = broker_options("h:1883")
    assert (options.host, options.port, options.tls) == ("h", 1883, False)
    assert broker_options("broker.local").port == 1883


def test_default_port_and_trailing_slash():
    assert broker_options("mqtt://h").port == 1883
    assert broker_options("mqtt://h:1883/").host == "h"


def test_credentials_come_from_the_url():
    options = broker_options("mqtt://user:pw@h")
    assert (options.host, options.port, options.username, options.password) == ("h", 1883, "user", "pw")


def test_credential_options_win_over_the_url_and_none_falls_back_to_it():
    options = broker_options("mqtt://user:pw@h", username="other", password="secret")
    assert (options.username, options.password) == ("other", "secret")
    options = broker_options("mqtt://user:pw@h", username=None, password=None)  # what the CLI passes without flags
    assert (options.username, options.password) == ("user", "pw")


def test_other_fields_pass_through():
    options = broker_options(
        "mqtts://h:8884", ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem", prefix="site-a/multipa"
    )
    assert options == BrokerOptions(
        host="h", port=8884, tls=True, ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem", prefix="site-a/multipa"
    )


@pytest.mark.parametrize(
    "url", ["http://h", "ws://h:1883", "mqtt://", "mqtt://:1883", "mqtt://h/path", "mqtt://h:1883/a/b", ""]
)
def test_bad_urls_are_config_errors(url):
    assert "invalid broker URL" in str(config_error(url))


@pytest.mark.parametrize("url", ["mqtt://h:port", "mqtt://h:99999", "mqtt://h:-1"])
def test_bad_ports_are_config_errors(url):
    assert "invalid broker option" in str(config_error(url))


@pytest.mark.parametrize("prefix", ["", "a/+", "a/#", "/a", "a/", "a//b", "$SYS"])
def test_bad_prefixes_are_config_errors(prefix):
    assert "prefix" in str(config_error("mqtt://h", prefix=prefix))


def test_no_tls_context_without_tls():
    assert tls_context(broker_options("mqtt://h")) is None
    assert tls_context(broker_options("mqtt://h", ca_file="/does/not/matter.pem")) is None


def test_tls_context_with_the_system_certificates():
    context = tls_context(broker_options("mqtts://h"))
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_missing_ca_file_is_a_config_error(tmp_path):
    options = broker_options("mqtts://h", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as info:
        tls_context(options)
    assert info.value.code == "config_error" and "TLS" in str(info.value)


def test_an_unreadable_certificate_is_a_config_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError):
        tls_context(broker_options("mqtts://h", ca_file=str(junk)))
    with pytest.raises(ConfigError):
        tls_context(broker_options("mqtts://h", cert_file=str(tmp_path / "missing-cert.pem")))
