"""Alarm intake: webhooks served by the Airflow API server that open incidents and trigger runs.

- `sns`: Amazon SNS envelope parsing, signature verification (v1 SHA1withRSA, v2 SHA256withRSA),
  the certificate/subscribe URL host rule, the certificate cache (pure).
- `hmac_auth`: HMAC-SHA256 over "timestamp.body" for the generic alert webhook (pure).
- `intake`: mapping through the runbook, conf validation with the DAG's Params, dedup through the
  ledger, the deterministic run id, escalation of a raised severity.
- `app`: the FastAPI app (`create_app`), mounted at /incidents by `incident_ops_plugin.py`.
- `config`: the environment variables; `airflow_bridge`: trigger_dag and the HMAC secret.
"""

__all__ = ["app", "config", "hmac_auth", "intake", "sns"]
