"""Teams as the admin API takes and shows them (/admin/v1/teams...)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from infergate.schemas.base import Closed, ModelName, ModelQuotaMap, Refused, Schema
from infergate.schemas.usage import TeamUsage

TeamName = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
Quota = Field(None, ge=0, le=10**15, description="Tokens a month, across its members; null: no team quota.")
Budget = Field(None, ge=0, le=10**15,
               description="Millionths of CURRENCY a month, across its members (MODEL_PRICES); null: no budget.")
Models = Field(None, min_length=1, max_length=100,
               description="The models (or aliases) its members may use, within their plans' and keys'; null: any.")
ModelQuotas = Field(None, min_length=1, max_length=100,
                    description="Tokens a month of each model named (as requests name it), across its members: "
                                "beyond it, 429 model_quota_exceeded; a model not named has none of its own.")


class CreateTeamRequest(Closed):
    name: str = TeamName
    monthly_token_quota: int | None = Quota
    monthly_budget_micros: int | None = Budget
    allowed_models: list[ModelName] | None = Models
    model_quotas: ModelQuotaMap | None = ModelQuotas


class ChangeTeamRequest(Closed):
    """Any of the team's figures; null clears one."""

    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    monthly_token_quota: int | None = Quota
    monthly_budget_micros: int | None = Budget
    allowed_models: list[ModelName] | None = Models
    model_quotas: ModelQuotaMap | None = ModelQuotas

    @model_validator(mode="after")
    def _something(self) -> ChangeTeamRequest:
        if not self.model_fields_set:
            raise ValueError("say what to change: name, monthly_token_quota, monthly_budget_micros, allowed_models "
                             "or model_quotas")
        if "name" in self.model_fields_set and self.name is None:
            raise Refused("name", "a team keeps a name")
        return self

    def changes(self) -> dict:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ServiceAccountRequest(Closed):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                      description="What it is for (a backend's name); its key is named so too.")


class ServiceAccountView(Schema):
    user_id: str
    name: str
    team_id: str
    plan: str
    key_id: str
    api_key: str = Field(description="Its first key, shown once; InferGate stores only its hash.")
    created_at: datetime


class MemberRequest(Closed):
    user_id: str = Field(min_length=1, max_length=64)


class TeamView(Schema):
    team_id: str
    name: str
    monthly_token_quota: int | None
    monthly_budget_micros: int | None
    allowed_models: list[str] | None
    model_quotas: dict[str, int] | None
    created_at: datetime


class TeamMember(Schema):
    user_id: str
    email: str | None
    kind: str = Field(description="`person`, or `service` for a service account.")
    name: str | None = Field(description="A service account's name.")


class TeamDetail(TeamView):
    usage: TeamUsage = Field(description="This month's standing: charged, and held by requests in flight.")
    currency: str
    members: list[TeamMember] = Field(description="Its members, by id: the first 100.")


class TeamPage(Schema):
    data: list[TeamView]
    next_cursor: str | None
