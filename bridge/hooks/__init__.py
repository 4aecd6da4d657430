"""The requests the bridge makes to the operator's own systems: the pre-call lookup
(CALL_SETUP_URL) and the call reports (CALL_REPORT_URL), signed JSON POSTs, and the
outbox that delivers reports with retries, kept in the fleet's store so an undelivered
report outlives a restart. May import: config, observability, threads, http_opener, state."""

from .signature import SIGNATURE_HEADER, signature_header, verify_signature

__all__ = ["SIGNATURE_HEADER", "signature_header", "verify_signature"]
