"""[ari] instance, heartbeat_seconds, lease_seconds (docs/scale-out.md): validated, named
on error, overridable from the environment."""

from __future__ import annotations

import pytest

from callproof.config import ConfigError, load_config

from .test_config import GOOD, write


def test_one_instance_by_default_registers_the_app_itself(tmp_path):
    ari = load_config(write(tmp_path, GOOD), env={}).ari
    assert (ari.instance, ari.registered_app, ari.heartbeat_seconds, ari.lease_seconds) == ("", "callproof", 2.0, 10.0)


def test_instance_and_lease_from_the_environment(tmp_path):
    ari = load_config(write(tmp_path, GOOD), env={"CALLPROOF_ARI_INSTANCE": "node1b",
                                                  "CALLPROOF_ARI_HEARTBEAT_SECONDS": "1",
                                                  "CALLPROOF_ARI_LEASE_SECONDS": "4"}).ari
    assert ari.registered_app == "callproof_node1b" and (ari.heartbeat_seconds, ari.lease_seconds) == (1.0, 4.0)


@pytest.mark.parametrize("env, named, why", [
    ({"CALLPROOF_ARI_INSTANCE": "a_b"}, "ari.instance", "letters and digits"),
    ({"CALLPROOF_ARI_INSTANCE": "a.1"}, "ari.instance", "letters and digits"),
    ({"CALLPROOF_ARI_INSTANCE": "a", "CALLPROOF_ARI_APP": "cp-x"}, "ari.app", "letters, digits and _"),
    ({"CALLPROOF_ARI_HEARTBEAT_SECONDS": "0"}, "ari.heartbeat_seconds", "positive"),
    ({"CALLPROOF_ARI_HEARTBEAT_SECONDS": "2", "CALLPROOF_ARI_LEASE_SECONDS": "5"}, "ari.lease_seconds",
     "3 heartbeats"),
])
def test_bad_instance_settings_name_the_key(tmp_path, env, named, why):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD), env=env)
    assert err.value.key == named and why in str(err.value), str(err.value)
