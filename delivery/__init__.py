"""Leaders' delivery: alerts when a KPI crosses a line, sent by e-mail and webhook.

``delivery.channels`` sends (SMTP, webhooks) and records every attempt; ``delivery.alerts``
holds the alert rules, evaluates them and delivers their events. Plain Python: no Streamlit.
"""
