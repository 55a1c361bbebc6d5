import pytest

from runtune.settings import EMULATOR_VARIABLES, CommonSettings, GatewaySettings, ServiceSettings, SettingsError
from tests.unit.settings_env import EMULATORS


@pytest.mark.parametrize("variable", EMULATOR_VARIABLES)
def test_gcp_profile_refuses_each_emulator_variable(clean_env: pytest.MonkeyPatch, variable: str) -> None:
    clean_env.setenv("RUNTUNE_PROFILE", "gcp")
    clean_env.setenv("RUNTUNE_PROJECT_ID", "acme-prod")
    clean_env.setenv(variable, EMULATORS[variable])
    with pytest.raises(SettingsError, match=variable):
        CommonSettings()


def test_gcp_profile_starts_without_emulators(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNTUNE_PROFILE", "gcp")
    clean_env.setenv("RUNTUNE_PROJECT_ID", "acme-prod")
    assert CommonSettings().is_local is False


def test_gcp_profile_refuses_a_local_internal_token(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNTUNE_PROFILE", "gcp")
    clean_env.setenv("RUNTUNE_PROJECT_ID", "acme-prod")
    clean_env.setenv("RUNTUNE_INTERNAL_TOKEN", "shared-secret")
    with pytest.raises(SettingsError, match="RUNTUNE_INTERNAL_TOKEN"):
        GatewaySettings()


def test_gcp_services_need_the_gateway_account(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNTUNE_PROFILE", "gcp")
    clean_env.setenv("RUNTUNE_PROJECT_ID", "acme-prod")
    with pytest.raises(SettingsError, match="RUNTUNE_GATEWAY_SERVICE_ACCOUNT"):
        ServiceSettings()


def test_local_profile_names_the_missing_emulator(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8090")
    with pytest.raises(SettingsError, match="STORAGE_EMULATOR_HOST") as info:
        CommonSettings()
    assert "runtune dev up" in str(info.value)


def test_local_profile_reads_runtune_variables(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in EMULATORS.items():
        clean_env.setenv(name, value)
    clean_env.setenv("RUNTUNE_INTERNAL_TOKEN", "t0ken")
    clean_env.setenv("RUNTUNE_RATE_LIMIT_PER_MINUTE", "5")
    settings = GatewaySettings()
    assert settings.rate_limit_per_minute == 5
    assert settings.internal_token is not None
    assert "t0ken" not in repr(settings)  # secrets never print
