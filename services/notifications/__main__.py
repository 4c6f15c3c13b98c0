from shared.entrypoint import ServiceSpec, main

from .settings import NotificationsSettings

SPEC = ServiceSpec(
    name="notifications",
    schema="notifications",
    settings=NotificationsSettings,
    create_app="services.notifications.app:create_app",
    worker="services.notifications.worker:run",
)

if __name__ == "__main__":
    main(SPEC)
