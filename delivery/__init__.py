"""Leaders' delivery: alerts when a KPI crosses a line, sent by e-mail and webhook, and
scheduled reports (pages as PDF, XLSX or PPTX) by e-mail.

``delivery.channels`` sends (SMTP, webhooks) and records every attempt; ``delivery.alerts``
holds the alert rules, evaluates them and delivers their events; ``delivery.reports`` holds
the scheduled reports and sends those due, rendered per recipient by ``delivery.render``
(the only module that runs Streamlit: a page script headless). The rest is plain Python.
"""
