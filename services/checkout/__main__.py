from shared.entrypoint import ServiceSpec, main

from .settings import CheckoutSettings

SPEC = ServiceSpec(
    name="checkout",
    schema="checkout",
    settings=CheckoutSettings,
    create_app="services.checkout.app:create_app",
    worker="services.checkout.worker:run",
)

if __name__ == "__main__":
    main(SPEC)
