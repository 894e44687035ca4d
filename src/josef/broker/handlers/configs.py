"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: thin over ConfigAdmin."""
from __future__ import annotations

from josef.broker.config_admin import SET, ConfigAdminError
from josef.broker.futures import after
from josef.broker.handlers import api
from josef.config import BROKER_CONFIGS, TOPIC_CONFIGS
from josef.protocol.errors import Error


@api(32, "DescribeConfigs", 1, 4)
def handle_describe_configs(broker, ctx, request):
    include_synonyms = getattr(request, "include_synonyms", False)
    include_docs = getattr(request, "include_documentation", False)
    results = []
    for r in request.resources:
        keys = None if r.configuration_keys is None else list(r.configuration_keys)
        result = {"error_code": Error.NONE, "error_message": None, "resource_type": r.resource_type,
                  "resource_name": r.resource_name, "configs": []}
        try:
            entries = broker.config_admin.describe(r.resource_type, r.resource_name, keys)
        except ConfigAdminError as e:
            result.update(error_code=e.code, error_message=e.message)
        else:
            result["configs"] = [{
                "name": e.name, "value": e.value, "read_only": e.read_only, "config_source": e.source,
                "is_sensitive": e.sensitive, "config_type": e.config_type,
                "synonyms": [{"name": n, "value": v, "source": s} for n, v, s in e.synonyms] if include_synonyms else [],
                "documentation": _doc(e.name) if include_docs else None,
            } for e in entries]
        results.append(result)
    return {"throttle_time": 0, "results": results}


def _doc(name: str) -> str | None:
    defn = TOPIC_CONFIGS.get(name) or BROKER_CONFIGS.get(name)
    return defn.doc or None if defn else None


def _alter(broker, request, incremental: bool):
    responses = []
    writes = []  # (response, write)
    for r in request.resources:
        if incremental:
            changes = [(c.name, c.config_operation, c.value) for c in r.configs]
        else:
            changes = [(c.name, SET, c.value) for c in r.configs]
        response = {"error_code": Error.NONE, "error_message": None, "resource_type": r.resource_type,
                    "resource_name": r.resource_name}
        try:
            write = broker.config_admin.alter(r.resource_type, r.resource_name, changes,
                                              incremental=incremental, validate_only=request.validate_only)
        except ConfigAdminError as e:
            response.update(error_code=e.code, error_message=e.message)
        else:
            if write is not None:
                writes.append((response, write))
        responses.append(response)

    def answer() -> dict:
        for response, write in writes:
            error = write.exception()
            if isinstance(error, ConfigAdminError):
                response.update(error_code=error.code, error_message=error.message)
            elif error is not None:
                raise error
        return {"throttle_time": 0, "responses": responses}
    return after([w for _, w in writes], answer)


@api(33, "AlterConfigs", 0, 2)
def handle_alter_configs(broker, ctx, request):
    return _alter(broker, request, incremental=False)


@api(44, "IncrementalAlterConfigs", 0, 1)
def handle_incremental_alter_configs(broker, ctx, request):
    return _alter(broker, request, incremental=True)
