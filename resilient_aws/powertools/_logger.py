"""The library's stdlib logs, formatted by a Powertools Logger."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

__all__ = ["attach_logger"]

LIBRARY_LOGGER = "resilient_aws"


def attach_logger(logger: Logger, *, level: int | str | None = None) -> None:
    """Send every ``resilient_aws`` log record through ``logger``'s handler and JSON formatter.

    A thin call of Powertools' ``copy_config_to_registered_loggers`` restricted to the
    library's top logger (its children, ``resilient_aws.retry``, ``resilient_aws.batch``...,
    propagate to it): the library logger gets ``logger``'s handler, stops propagating to the
    root logger (no line printed twice) and takes ``level``, by default ``logger``'s own level.
    Retry-core records carry their event under the ``retry_event`` key. As Powertools does for
    any logger it configures, ``logger`` gains a ``name`` key holding the record's logger name.

    Call it once, at module level, after creating the Logger.
    """
    logging.getLogger(LIBRARY_LOGGER)  # registered, so that Powertools finds it
    copy_config_to_registered_loggers(
        source_logger=logger, log_level=level, include={LIBRARY_LOGGER}
    )
