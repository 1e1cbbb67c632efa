"""Where budget alerts are claimed (MongoDB's `alerts` collection, one document per alert) and
how they leave: an SNS topic (the template's AlarmTopic) and a webhook. Both are made once per
function instance and reached only when an alert is raised; each call is bounded by ALERT_SECONDS."""

from __future__ import annotations

import json
import urllib.request

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infergate.domain.alerts import Alert
from infergate.domain.periods import utc_now
from infergate.stores.mongo import ALERTS, unavailable_when_unreachable

ALERT_SECONDS = 3.0


class MongoAlertClaims:
    def __init__(self, database: Database) -> None:
        self._alerts = database[ALERTS]

    @unavailable_when_unreachable
    def claim(self, alert: Alert) -> bool:
        try:
            self._alerts.insert_one({"_id": alert.claim_id(), **alert.payload(), "raised_at": utc_now()})
        except DuplicateKeyError:
            return False
        return True


class WebhookSender:
    """POSTs the alert's JSON to BUDGET_ALERT_WEBHOOK_URL."""

    def __init__(self, url: str) -> None:
        self._url = url

    def send(self, alert: Alert) -> None:
        request = urllib.request.Request(self._url, data=json.dumps(alert.payload()).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "InferGate"})
        with urllib.request.urlopen(request, timeout=ALERT_SECONDS) as answer:  # noqa: S310 - the operator's URL
            answer.read()


class SnsSender:
    """Publishes the alert to the template's topic, beside the alarms."""

    def __init__(self, topic_arn: str) -> None:
        self._topic_arn, self._client = topic_arn, None

    def send(self, alert: Alert) -> None:
        if self._client is None:
            import boto3  # only when an alert is raised: cold starts do not pay for it
            from botocore.config import Config

            self._client = boto3.client("sns", config=Config(connect_timeout=ALERT_SECONDS,
                                                             read_timeout=ALERT_SECONDS, retries={"max_attempts": 1}))
        subject = f"InferGate: {alert.level} {alert.id} at {alert.threshold}% of its {alert.limit}"
        self._client.publish(TopicArn=self._topic_arn, Subject=subject[:100], Message=json.dumps(alert.payload()))
