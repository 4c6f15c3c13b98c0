from shared.entrypoint import ServiceSpec, main

from .settings import CrmSettings

SPEC = ServiceSpec(
    name="crm_sync",
    schema="crm_sync",
    settings=CrmSettings,
    create_app="services.crm_sync.app:create_app",
    worker="services.crm_sync.worker:run",
)

if __name__ == "__main__":
    main(SPEC)
