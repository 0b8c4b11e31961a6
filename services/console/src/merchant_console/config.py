"""The console's settings: where the public API is, and the key that seals session cookies."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from stocksync_common.settings import DEV_SECRET, ServiceSettings


class ConsoleSettings(ServiceSettings):
    http_port: int = 8005
    # The public API the console calls with the merchant's key: the gateway in the
    # embedded default, the API's in-cluster route on Kubernetes.
    console_api_base_url: str = "http://127.0.0.1:8000"
    # Seals the session cookie (encrypted and authenticated): the API key never
    # travels in clear in it. Changing it signs every merchant out.
    console_session_secret: SecretStr = SecretStr(DEV_SECRET)
    console_session_max_age_s: int = Field(8 * 3600, ge=60, le=30 * 24 * 3600)
    # Set behind HTTPS so that the browser sends the cookie over TLS only.
    console_cookie_secure: bool = False
    console_api_timeout_s: float = Field(15.0, gt=0, le=120)
    # Live pages: how often the console asks the API what changed (once per signed-in
    # merchant with a page open, whatever the number of tabs), and how long one
    # server-sent event stream lasts before the browser reconnects (and the session
    # cookie is checked again).
    console_live_interval_s: float = Field(1.0, ge=0.1, le=60)
    console_live_stream_max_s: float = Field(300.0, ge=5, le=3600)

    # Replaces the base's check (same name): the console holds no API key secret or
    # admin token, only the key that seals its cookies.
    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> ConsoleSettings:
        secret = self.console_session_secret.get_secret_value()
        if self.environment == "production" and (secret == DEV_SECRET or len(secret) < 16):
            raise ValueError("CONSOLE_SESSION_SECRET must be set to a secret of 16+ characters in production")
        return self

    @property
    def service_name(self) -> str:
        return "console"
