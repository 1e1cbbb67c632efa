import pytest

from infergate.config import Settings, plan_catalog


def test_the_free_plan_takes_its_figures_from_settings():
    plans = plan_catalog(Settings.from_env({"DEFAULT_MONTHLY_TOKEN_QUOTA": "300", "RATE_LIMIT_RPM": "7", "RATE_LIMIT_TPM": "900"}))
    free = plans.default
    assert (free.name, free.monthly_token_quota, free.rate_limit_rpm, free.rate_limit_tpm) == ("free", 300, 7, 900)
    assert plans.get("pro").monthly_token_quota > free.monthly_token_quota


def test_plans_json_adds_and_changes_plans():
    plans = plan_catalog(Settings.from_env({
        "PLANS": '{"pro": {"rate_limit_rpm": 1000}, "team": {"monthly_token_quota": 9, "rate_limit_rpm": 2, '
                 '"rate_limit_tpm": 3, "max_output_tokens": 4}}',
        "DEFAULT_PLAN": "team",
    }))
    assert plans.get("pro").rate_limit_rpm == 1000 and plans.get("pro").monthly_token_quota == 5_000_000
    assert plans.default.name == "team" and plans.default.max_output_tokens == 4
    assert plans.names() == ["free", "pro", "team"]


@pytest.mark.parametrize("plans", ['{"team": {"monthly_token_quota": 1}}', "[1]", "{not json", '{"pro": {"rate_limit_rpm": 0}}'])
def test_an_invalid_plans_setting_is_refused_at_start(plans):
    with pytest.raises(ValueError, match="PLANS"):
        plan_catalog(Settings.from_env({"PLANS": plans}))


def test_the_default_plan_must_exist():
    with pytest.raises(ValueError, match="DEFAULT_PLAN"):
        plan_catalog(Settings.from_env({"DEFAULT_PLAN": "gold"}))
