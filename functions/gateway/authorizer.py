"""The Lambda REQUEST authorizer in front of every protected route (infergate.api.authorizer):
who a key, an admin key or a sign-in token belongs to, or why it is refused."""

from __future__ import annotations

from infergate.api.authorizer import authorizer
from infergate.bootstrap import instance

lambda_handler = authorizer(instance())
