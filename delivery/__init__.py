"""Alert delivery: the dispatcher (``meters notify``) that sends the outbox's alerts to webhooks, the
MQTT broker and apprise URLs, in the recipient's language."""
