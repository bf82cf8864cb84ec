"""The one retry core of resilient_aws, built on tenacity.

Every retry in the library, of a whole request or of the failed entries of a batch, goes
through here: full-jitter exponential backoff, attempt caps counted on the wire (botocore
retries nothing on clients from ``RetryPolicy.botocore_config()``), elapsed-time caps, a
per-call :class:`Deadline` (Lambda-aware) that no sleep overruns, a shared
:class:`RetryBudget` that refuses retries when everything is failing at once, and a
:class:`Pacer` that slows a batch writer to what the service completes.

Code that backs off or reports on its own (an SQS consumer's visibility timeouts) uses the same
pieces: :func:`backoff_delay` is the core's backoff formula, without tenacity, and :func:`emit`
logs a :class:`RetryEvent` and hands it to the listeners, as the core does with its own.

>>> from resilient_aws.retry import RetryPolicy
>>> policy = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=2.0)
>>> policy.call(lambda: "ok")
'ok'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
    from resilient_aws.retry._budget import RetryBudget
    from resilient_aws.retry._classify import (
        ErrorClass,
        classify,
        classify_entry,
        register_entry_codes,
    )
    from resilient_aws.retry._deadline import Deadline
    from resilient_aws.retry._decorator import retry
    from resilient_aws.retry._events import (
        RetryEvent,
        RetryListener,
        add_listener,
        emit,
        remove_listener,
    )
    from resilient_aws.retry._pacer import Pacer
    from resilient_aws.retry._partial import (
        FailedEntry,
        PartialOutcome,
        SendResult,
        arun_partial,
        run_partial,
    )
    from resilient_aws.retry._policy import DEFAULT_POLICY, RetryPolicy
    from resilient_aws.retry._wait import JITTERS, Jitter, backoff_delay, wait_jittered

__all__ = [
    "DEFAULT_POLICY",
    "Deadline",
    "ErrorClass",
    "FailedEntry",
    "JITTERS",
    "Jitter",
    "Pacer",
    "PartialOutcome",
    "RetryBudget",
    "RetryEvent",
    "RetryListener",
    "RetryPolicy",
    "SendResult",
    "add_listener",
    "arun_partial",
    "backoff_delay",
    "classify",
    "classify_entry",
    "emit",
    "register_entry_codes",
    "remove_listener",
    "retry",
    "run_partial",
    "wait_jittered",
]

# PEP 562: a public name is imported from its module when it is first asked for, so that a
# handler importing RetryPolicy loads neither the batch engine nor tenacity.
_MODULE_OF = {
    "DEFAULT_POLICY": "_policy",
    "Deadline": "_deadline",
    "ErrorClass": "_classify",
    "FailedEntry": "_partial",
    "JITTERS": "_wait",
    "Jitter": "_wait",
    "Pacer": "_pacer",
    "PartialOutcome": "_partial",
    "RetryBudget": "_budget",
    "RetryEvent": "_events",
    "RetryListener": "_events",
    "RetryPolicy": "_policy",
    "SendResult": "_partial",
    "add_listener": "_events",
    "arun_partial": "_partial",
    "backoff_delay": "_wait",
    "classify": "_classify",
    "classify_entry": "_classify",
    "emit": "_events",
    "register_entry_codes": "_classify",
    "remove_listener": "_events",
    "retry": "_decorator",
    "run_partial": "_partial",
    "wait_jittered": "_wait",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
