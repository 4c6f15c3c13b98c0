"""Builds (and reuses) the processor client of each account from its stored settings."""

from __future__ import annotations

from ..accounts import Account
from ..config import CommonSettings
from ..secrets import decrypt
from .base import PaymentProcessor, ProcessorConfig, ProcessorError
from .stripe_adapter import StripeProcessor

TEST_SECRET_KEY = "sk_test_commerce_local"
TEST_PUBLISHABLE_KEY = "pk_test_commerce_local"


class ProcessorNotConnected(ProcessorError):
    pass


def test_processor_config(settings: CommonSettings, webhook_secret: str | None = None) -> ProcessorConfig:
    return ProcessorConfig(
        type="test",
        secret_key=TEST_SECRET_KEY,
        publishable_key=TEST_PUBLISHABLE_KEY,
        api_base=settings.test_processor_url,
        browser_api_base=settings.browser_test_processor_url,
        webhook_secret=webhook_secret,
    )


def config_for(account: Account, settings: CommonSettings, *, test_mode: bool = False) -> ProcessorConfig:
    """The account's processor; ``test_mode`` forces the test processor (a live account's
    link opened in test mode)."""
    stored = account.processor
    if test_mode and not account.test_mode:
        return test_processor_config(settings)
    if not stored:
        raise ProcessorNotConnected("This account has no payment processor connected.")
    webhook_secret = (
        decrypt(settings, stored["webhook_secret_encrypted"]) if stored.get("webhook_secret_encrypted") else None
    )
    if stored["type"] == "test":
        return test_processor_config(settings, webhook_secret)
    return ProcessorConfig(
        type="stripe",
        secret_key=decrypt(settings, stored["secret_key_encrypted"]),
        publishable_key=stored["publishable_key"],
        api_base=stored.get("api_base"),
        webhook_secret=webhook_secret,
    )


class ProcessorRegistry:
    """One client per account configuration (version), reused across requests."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, int], StripeProcessor] = {}
        self._retired: list[StripeProcessor] = []

    def for_account(self, account: Account, *, test_mode: bool = False) -> PaymentProcessor:
        if test_mode and not account.test_mode:
            return self._test_client()
        key = (account.id, account.version)
        client = self._clients.get(key)
        if client is None:
            for old in [k for k in self._clients if k[0] == account.id]:
                self._retired.append(self._clients.pop(old))
            client = StripeProcessor(
                config_for(account, self.settings),
                max_network_retries=self.settings.processor_max_network_retries,
                timeout=self.settings.processor_timeout_seconds,
            )
            self._clients[key] = client
        return client

    def _test_client(self) -> PaymentProcessor:
        key = ("__test__", 0)
        client = self._clients.get(key)
        if client is None:
            client = StripeProcessor(
                test_processor_config(self.settings),
                max_network_retries=self.settings.processor_max_network_retries,
                timeout=self.settings.processor_timeout_seconds,
            )
            self._clients[key] = client
        return client

    async def close(self) -> None:
        for client in [*self._clients.values(), *self._retired]:
            await client.close()
        self._clients.clear()
        self._retired.clear()
