"""A moto KMS client that answers a wrong-key ``Decrypt`` the way AWS does."""

from __future__ import annotations

from typing import Any

import boto3


def aws_like_kms(region: str) -> Any:
    """A KMS client on moto whose wrong-key ``Decrypt`` raises ``IncorrectKeyException``, as
    AWS does (moto raises ``AccessDeniedException``, which on AWS means the caller may not use
    the key: a different failure, reported differently). The tests give no key a policy, so
    moto's AccessDeniedException from Decrypt is always the wrong key."""
    kms = boto3.client("kms", region_name=region)

    def as_aws(parsed: dict[str, Any], **_: Any) -> None:
        error = parsed.get("Error", {})
        if error.get("Code") == "AccessDeniedException":
            error["Code"] = "IncorrectKeyException"

    kms.meta.events.register("after-call.kms.Decrypt", as_aws)
    return kms
