from shared.entrypoint import ServiceSpec, main

from .settings import BillingSettings

SPEC = ServiceSpec(
    name="billing",
    schema="billing",
    settings=BillingSettings,
    create_app="services.billing.app:create_app",
    worker="services.billing.worker:run",
    scheduler="services.billing.charging.loop:run",
)

if __name__ == "__main__":
    main(SPEC)
