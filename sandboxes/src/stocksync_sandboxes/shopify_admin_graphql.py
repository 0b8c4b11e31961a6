"""The part of Shopify's GraphQL Admin API the sandbox store serves, checked as Shopify checks it.

A real GraphQL engine (graphql-core) parses, validates and executes requests against a
schema that is a faithful subset of Shopify's: unknown fields, wrong types, missing
non-null input and undeclared variables fail as they do on Shopify, and answers carry
only the fields the caller selected. On top of the engine come the checks Shopify makes
before running anything: the 250-item input array limit, global id formats, the query
cost limit and the leaky-bucket throttle.

The schema follows the API version in the URL, because `inventorySetQuantities` changed
(shopify.dev changelog, "concurrency protection features"):

- up to 2025-10: `compareQuantity` per quantity, or `ignoreCompareQuantity: true`;
- 2026-01: adds `changeFromQuantity` (null opts out) and the `@idempotent(key:)` directive,
  the old fields still work;
- 2026-04 on: `compareQuantity` and `ignoreCompareQuantity` are gone, `changeFromQuantity`
  must be passed for every quantity (null to opt out) and `@idempotent` is mandatory.
"""

import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    execute_sync,
    get_named_type,
    get_operation_ast,
    is_object_type,
    parse,
    validate,
)
from graphql.execution.collect_fields import collect_fields
from graphql.execution.values import get_argument_values, get_directive_values, get_variable_values

from stocksync_sandboxes.cost_bucket import LeakyBucket
from stocksync_sandboxes.shopify_inventory import (
    GID_PATTERN,
    AdjustmentGroup,
    CompareCondition,
    CompareMissing,
    CompareWith,
    Inventory,
    InventoryChange,
    QuantityToSet,
    SetQuantities,
    Unchecked,
    parse_gid,
)

# "The input array size of 251 is greater than the maximum allowed of 250." (Shopify)
MAX_INPUT_ARRAY_SIZE = 250

# Cost of one inventorySetQuantities call. Shopify documents 10 points per mutation; the
# extra point per quantity stands in for the cost of the returned changes.
# (unverified: an approximation, Shopify's calculated cost depends on the selection)
MUTATION_BASE_COST = 10
MUTATION_COST_PER_QUANTITY = 1

_API_VERSION_PATTERN = re.compile(r"^[0-9]{4}-(01|04|07|10)$")
_UNSTABLE = "unstable"


# --- API versions ------------------------------------------------------------------------


def resolve_api_version(requested: str, *, oldest_supported: str, newest: str) -> str | None:
    """The version that serves a request made to `requested`, or None for an unknown version.

    Shopify serves a request to a version it no longer supports with the oldest supported
    stable version ("falls forward") and says which one in `X-Shopify-API-Version`.
    """
    if requested == _UNSTABLE:
        return requested
    if not _API_VERSION_PATTERN.match(requested) or requested > newest:
        return None
    return max(requested, oldest_supported)


@dataclass(frozen=True)
class SchemaRules:
    """What `inventorySetQuantities` accepts in one API version (see the module docstring)."""

    compare_quantity_fields: bool
    change_from_quantity: bool
    change_from_quantity_required: bool
    idempotent_directive: bool
    idempotency_key_required: bool

    @classmethod
    def for_version(cls, version: str) -> "SchemaRules":
        # Version names sort as dates; unstable is ahead of every stable version.
        key = "9999-99" if version == _UNSTABLE else version
        return cls(
            compare_quantity_fields=key < "2026-04",
            change_from_quantity=key >= "2026-01",
            change_from_quantity_required=key >= "2026-04",
            idempotent_directive=key >= "2026-01",
            idempotency_key_required=key >= "2026-04",
        )


_USER_ERROR_CODES = """
  CHANGE_FROM_QUANTITY_STALE COMPARE_QUANTITY_REQUIRED COMPARE_QUANTITY_STALE
  IDEMPOTENCY_CONCURRENT_REQUEST IDEMPOTENCY_KEY_PARAMETER_MISMATCH
  IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED INVALID_INVENTORY_ITEM INVALID_LOCATION INVALID_NAME
  INVALID_QUANTITY_NEGATIVE INVALID_QUANTITY_TOO_HIGH INVALID_QUANTITY_TOO_LOW INVALID_REASON
  INVALID_REFERENCE_DOCUMENT ITEM_NOT_STOCKED_AT_LOCATION
  NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR NON_MUTABLE_INVENTORY_ITEM
"""


@functools.cache
def schema_for(rules: SchemaRules) -> GraphQLSchema:
    """Shopify's schema, cut down to the inventory types the sandbox serves.

    Type and field names are Shopify's, so a document valid here is valid there.
    """
    directive = "directive @idempotent(key: String!) on FIELD" if rules.idempotent_directive else ""
    ignore_compare = "ignoreCompareQuantity: Boolean = false" if rules.compare_quantity_fields else ""
    compare = "compareQuantity: Int" if rules.compare_quantity_fields else ""
    change_from = "changeFromQuantity: Int" if rules.change_from_quantity else ""
    return build_schema(
        f"""
        schema {{ query: QueryRoot mutation: Mutation }}
        {directive}
        scalar DateTime

        type QueryRoot {{
          inventoryItem(id: ID!): InventoryItem
          inventoryLevel(id: ID!): InventoryLevel
          location(id: ID): Location
        }}
        type Mutation {{
          inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
        }}

        input InventorySetQuantitiesInput {{
          name: String!
          reason: String!
          referenceDocumentUri: String
          {ignore_compare}
          quantities: [InventoryQuantityInput!]!
        }}
        input InventoryQuantityInput {{
          inventoryItemId: ID!
          locationId: ID!
          quantity: Int!
          {compare}
          {change_from}
        }}

        type InventorySetQuantitiesPayload {{
          inventoryAdjustmentGroup: InventoryAdjustmentGroup
          userErrors: [InventorySetQuantitiesUserError!]!
        }}
        type InventorySetQuantitiesUserError {{
          code: InventorySetQuantitiesUserErrorCode
          field: [String!]
          message: String!
        }}
        enum InventorySetQuantitiesUserErrorCode {{ {_USER_ERROR_CODES} }}

        type InventoryAdjustmentGroup {{
          id: ID!
          createdAt: DateTime!
          reason: String!
          referenceDocumentUri: String
          changes(inventoryItemIds: [ID!], locationIds: [ID!], quantityNames: [String!]): [InventoryChange!]!
        }}
        type InventoryChange {{
          name: String!
          delta: Int!
          quantityAfterChange: Int
          ledgerDocumentUri: String
          item: InventoryItem
          location: Location
        }}
        type InventoryItem {{
          id: ID!
          sku: String
          tracked: Boolean!
          inventoryLevel(locationId: ID!): InventoryLevel
        }}
        type InventoryLevel {{
          id: ID!
          item: InventoryItem!
          location: Location!
          quantities(names: [String!]!): [InventoryQuantity!]!
        }}
        type InventoryQuantity {{
          id: ID!
          name: String!
          quantity: Int!
          updatedAt: DateTime
        }}
        type Location {{
          id: ID!
          name: String!
        }}
        """
    )


# --- executing a request -----------------------------------------------------------------


class Outcome(StrEnum):
    """How one GraphQL request ended, for the sandbox's request counters."""

    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    REJECTED = "rejected"
    THROTTLED = "throttled"
    QUERY = "query"


@dataclass
class GraphQLAnswer:
    body: dict[str, Any]
    outcome: Outcome


@dataclass
class _RequestContext:
    rules: SchemaRules
    schema: GraphQLSchema
    api_version: str
    request_id: str
    field_outcomes: list[Outcome] = field(default_factory=list)


@functools.lru_cache(maxsize=256)
def _checked_document(schema: GraphQLSchema, query: str) -> tuple[DocumentNode | None, tuple[GraphQLError, ...]]:
    """The parsed document, or its syntax or validation errors, once per schema and text.

    An app sends the same few documents with different variables; parsing and validating
    each request again took most of the sandbox's time per call, which Shopify (caching
    its parsed queries) does not spend. The errors and the outcome are the same.
    """
    try:
        document = parse(query)
    except GraphQLError as syntax_error:
        return None, (syntax_error,)
    errors = validate(schema, document)
    return (None, tuple(errors)) if errors else (document, ())


class AdminGraphQL:
    """Runs one GraphQL request against the store's inventory, metered by the cost bucket."""

    def __init__(self, inventory: Inventory, bucket: LeakyBucket) -> None:
        self._inventory = inventory
        self._bucket = bucket

    def execute(
        self,
        *,
        api_version: str,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
        request_id: str | None = None,
    ) -> GraphQLAnswer:
        rules = SchemaRules.for_version(api_version)
        schema = schema_for(rules)
        document, errors = _checked_document(schema, query)
        if document is None:
            return _rejected(errors)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f"No operation named '{operation_name}'"
                if operation_name
                else "An operation name is required when the document holds several operations"
            )
            return _rejected([GraphQLError(message)])
        coerced = get_variable_values(schema, operation.variable_definitions, dict(variables or {}))
        if isinstance(coerced, list):
            for variable_error in coerced:
                variable_error.extensions = {**(variable_error.extensions or {}), "code": "INVALID_VARIABLE"}
            return _rejected(coerced)
        fragments = _fragments(document)
        root_fields = _root_fields(schema, operation, fragments, coerced)
        input_errors = _input_errors(root_fields, coerced)
        if input_errors:
            return _rejected(input_errors)

        cost = _requested_cost(schema, operation, root_fields, fragments, coerced)
        if cost > self._bucket.size:
            too_costly = GraphQLError(
                f"Query cost is {cost}, which exceeds the single query max cost limit ({self._bucket.size:g}).",
                extensions={"code": "MAX_COST_EXCEEDED"},
            )
            return GraphQLAnswer(
                {"errors": [too_costly.formatted], "extensions": self._cost(cost, None)},
                Outcome.REJECTED,
            )
        if not self._bucket.try_take(cost):
            # Shopify answers a throttled call with HTTP 200, this body, and runs nothing.
            throttled = {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
            return GraphQLAnswer({"errors": [throttled], "extensions": self._cost(cost, None)}, Outcome.THROTTLED)

        context = _RequestContext(
            rules=rules,
            schema=schema,
            api_version=api_version,
            request_id=request_id or str(uuid.uuid4()),
        )
        result = execute_sync(
            schema,
            document,
            root_value=_Root(self._inventory),
            context_value=context,
            variable_values=dict(variables or {}),
            operation_name=operation_name,
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        body["extensions"] = self._cost(cost, cost)
        return GraphQLAnswer(body, _request_outcome(operation, context, bool(result.errors)))

    def _cost(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self._bucket.status().as_json(),
            }
        }


def _rejected(errors: Sequence[GraphQLError]) -> GraphQLAnswer:
    return GraphQLAnswer({"errors": [error.formatted for error in errors]}, Outcome.REJECTED)


def _request_outcome(operation: OperationDefinitionNode, context: _RequestContext, had_errors: bool) -> Outcome:
    if operation.operation is not OperationType.MUTATION:
        return Outcome.QUERY
    outcomes = context.field_outcomes
    if had_errors or not outcomes or Outcome.REJECTED in outcomes:
        return Outcome.REJECTED
    if all(outcome is Outcome.REPLAYED for outcome in outcomes):
        return Outcome.REPLAYED
    return Outcome.ACCEPTED


# --- checks made before execution --------------------------------------------------------


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


@dataclass(frozen=True)
class _RootField:
    node: FieldNode
    name: str
    arguments: dict[str, Any]
    argument_types: dict[str, GraphQLInputType]
    return_type: Any


def _root_fields(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> list[_RootField]:
    root_type = schema.get_root_type(operation.operation)
    assert root_type is not None  # validation refused operations the schema has no root for
    collected = collect_fields(schema, fragments, variables, root_type, operation.selection_set)
    fields: list[_RootField] = []
    for nodes in collected.values():
        node = nodes[0]
        name = node.name.value
        if name.startswith("__"):
            continue
        definition = root_type.fields[name]
        fields.append(
            _RootField(
                node=node,
                name=name,
                arguments=get_argument_values(definition, node, variables),
                argument_types={arg: spec.type for arg, spec in definition.args.items()},
                return_type=definition.type,
            )
        )
    return fields


def _input_errors(root_fields: Sequence[_RootField], variables: dict[str, Any]) -> list[GraphQLError]:
    """Shopify's checks on argument values that GraphQL itself does not make."""
    errors: list[GraphQLError] = []
    for root in root_fields:
        for name, value in root.arguments.items():
            _check_input(value, root.argument_types[name], [root.name, name], root.node, errors)
    return errors


def _check_input(
    value: Any,
    input_type: GraphQLInputType,
    path: list[str | int],
    node: FieldNode,
    errors: list[GraphQLError],
) -> None:
    if value is None:
        return
    if isinstance(input_type, GraphQLNonNull):
        _check_input(value, input_type.of_type, path, node, errors)
    elif isinstance(input_type, GraphQLList):
        if len(value) > MAX_INPUT_ARRAY_SIZE:
            errors.append(
                GraphQLError(
                    f"The input array size of {len(value)} is greater than the maximum "
                    f"allowed of {MAX_INPUT_ARRAY_SIZE}.",
                    node,
                    path=path,
                    extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
                )
            )
            return
        for index, element in enumerate(value):
            _check_input(element, input_type.of_type, [*path, index], node, errors)
    elif isinstance(input_type, GraphQLInputObjectType):
        for name, field_value in value.items():
            _check_input(field_value, input_type.fields[name].type, [*path, name], node, errors)
    elif getattr(input_type, "name", None) == "ID" and not GID_PATTERN.match(value):
        # Shopify rejects a malformed global id while coercing the argument, before running
        # anything. (unverified: the exact message and code of that error)
        errors.append(
            GraphQLError(
                f"Invalid global id '{value}'",
                node,
                path=path,
                extensions={"code": "INVALID_GLOBAL_ID"},
            )
        )


def _requested_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    root_fields: Sequence[_RootField],
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> int:
    """Shopify's calculated cost, approximated: 1 point per object field, scalars free."""
    total = 0
    for root in root_fields:
        if operation.operation is OperationType.MUTATION:
            quantities = root.arguments.get("input", {}).get("quantities", [])
            total += MUTATION_BASE_COST + MUTATION_COST_PER_QUANTITY * len(quantities)
            continue
        named = get_named_type(root.return_type)
        if is_object_type(named):
            assert isinstance(named, GraphQLObjectType)
            total += 1 + _selection_cost(schema, named, root.node.selection_set, fragments)
    return max(total, 1)


def _selection_cost(
    schema: GraphQLSchema,
    parent: GraphQLObjectType,
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            definition = parent.fields.get(selection.name.value)
            named = None if definition is None else get_named_type(definition.type)
            if isinstance(named, GraphQLObjectType):
                total += 1 + _selection_cost(schema, named, selection.selection_set, fragments)
        elif isinstance(selection, InlineFragmentNode):
            total += _selection_cost(schema, parent, selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                total += _selection_cost(schema, parent, fragment.selection_set, fragments)
    return total


# --- resolvers -----------------------------------------------------------------------------

# graphql-core's default resolver reads a dict key or attribute named after the field and,
# when it is callable, calls it with (info, **arguments); the objects below lean on that.

_QUANTITY_NAMES_READABLE = ("available", "on_hand", "committed")


class _Root:
    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory

    def inventorySetQuantities(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        context: _RequestContext = info.context
        idempotency_key = _idempotency_key(info, context)
        if idempotency_key is None and context.rules.idempotency_key_required:
            context.field_outcomes.append(Outcome.REJECTED)
            # (unverified: Shopify documents a runtime error, not its exact wording or code)
            raise GraphQLError(
                "The @idempotent directive is required for this mutation.",
                extensions={"code": "IDEMPOTENCY_KEY_REQUIRED"},
            )
        command = SetQuantities(
            name=input["name"],
            reason=input["reason"],
            reference_document_uri=input.get("referenceDocumentUri"),
            quantities=tuple(
                QuantityToSet(
                    inventory_item_id=quantity["inventoryItemId"],
                    location_id=quantity["locationId"],
                    quantity=quantity["quantity"],
                    compare=_compare_condition(context.rules, input, quantity),
                )
                for quantity in input["quantities"]
            ),
            idempotency_key=idempotency_key,
            request_id=context.request_id,
            api_version=context.api_version,
        )
        result = self._inventory.set_quantities(command)
        if result.user_errors:
            context.field_outcomes.append(Outcome.REJECTED)
        elif result.replayed:
            context.field_outcomes.append(Outcome.REPLAYED)
        else:
            context.field_outcomes.append(Outcome.ACCEPTED)
        return {
            "inventoryAdjustmentGroup": (
                None if result.group is None else _group_object(self._inventory, result.group)
            ),
            "userErrors": [error.as_json() for error in result.user_errors],
        }

    def inventoryItem(self, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
        if not _item_is_known(self._inventory, id):
            return None
        return _item_object(self._inventory, id)

    def inventoryLevel(self, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
        # Shopify's level ids name the location and carry the item in a query string:
        # gid://shopify/InventoryLevel/<location>?inventory_item_id=<item>
        match = re.match(r"^gid://shopify/InventoryLevel/([0-9]+)\?inventory_item_id=([0-9]+)$", id)
        if match is None:
            return None
        item_id = f"gid://shopify/InventoryItem/{match[2]}"
        location_id = f"gid://shopify/Location/{match[1]}"
        if self._inventory.level(item_id, location_id) is None:
            return None
        return _level_object(self._inventory, item_id, location_id)

    def location(self, info: GraphQLResolveInfo, id: str | None = None) -> dict[str, Any] | None:
        if id is None or not self._inventory.knows_location(id):
            return None
        return _location_object(id)


def _idempotency_key(info: GraphQLResolveInfo, context: _RequestContext) -> str | None:
    if not context.rules.idempotent_directive:
        return None
    directive = context.schema.get_directive("idempotent")
    assert directive is not None
    values = get_directive_values(directive, info.field_nodes[0], info.variable_values)
    return None if values is None else str(values["key"])


def _compare_condition(
    rules: SchemaRules, set_input: Mapping[str, Any], quantity: Mapping[str, Any]
) -> CompareCondition:
    # graphql-core leaves out input fields the caller did not send and keeps an explicit
    # null as None: exactly the distinction changeFromQuantity relies on.
    if "changeFromQuantity" in quantity:
        expected = quantity["changeFromQuantity"]
        if expected is None:
            return Unchecked()
        return CompareWith(
            field="changeFromQuantity",
            expected=expected,
            stale_code="CHANGE_FROM_QUANTITY_STALE",
            stale_message="The changeFromQuantity argument no longer matches the persisted quantity.",
        )
    if rules.change_from_quantity_required:
        # (unverified: the code and wording of this runtime error)
        return CompareMissing(
            field="changeFromQuantity",
            message="The changeFromQuantity argument must be given to each quantity; pass null to skip the check.",
        )
    if set_input.get("ignoreCompareQuantity"):
        return Unchecked()
    if quantity.get("compareQuantity") is not None:
        return CompareWith(
            field="compareQuantity",
            expected=quantity["compareQuantity"],
            stale_code="COMPARE_QUANTITY_STALE",
            stale_message="The compareQuantity argument no longer matches the persisted quantity.",
        )
    return CompareMissing(
        field="compareQuantity",
        message="The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.",
    )


def _item_is_known(inventory: Inventory, inventory_item_id: str) -> bool:
    return inventory.catalog_item(inventory_item_id) is not None or any(
        level.inventory_item_id == inventory_item_id for level in inventory.levels()
    )


def _group_object(inventory: Inventory, group: AdjustmentGroup) -> dict[str, Any]:
    def changes(
        info: GraphQLResolveInfo,
        inventoryItemIds: list[str] | None = None,
        locationIds: list[str] | None = None,
        quantityNames: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        return [
            _change_object(inventory, change)
            for change in group.changes
            if (inventoryItemIds is None or change.inventory_item_id in inventoryItemIds)
            and (locationIds is None or change.location_id in locationIds)
            and (quantityNames is None or change.name in quantityNames)
        ]

    return {
        "id": group.id,
        "createdAt": group.created_at,
        "reason": group.reason,
        "referenceDocumentUri": group.reference_document_uri,
        "changes": changes,
    }


def _change_object(inventory: Inventory, change: InventoryChange) -> dict[str, Any]:
    return {
        "name": change.name,
        "delta": change.delta,
        "quantityAfterChange": change.quantity_after_change,
        "ledgerDocumentUri": None,
        "item": _item_object(inventory, change.inventory_item_id),
        "location": _location_object(change.location_id),
    }


def _item_object(inventory: Inventory, inventory_item_id: str) -> dict[str, Any]:
    catalog_item = inventory.catalog_item(inventory_item_id)

    def inventory_level(info: GraphQLResolveInfo, locationId: str) -> dict[str, Any] | None:
        if inventory.level(inventory_item_id, locationId) is None:
            return None
        return _level_object(inventory, inventory_item_id, locationId)

    return {
        "id": inventory_item_id,
        "sku": None if catalog_item is None else catalog_item.sku,
        "tracked": True,
        "inventoryLevel": inventory_level,
    }


def _level_object(inventory: Inventory, inventory_item_id: str, location_id: str) -> dict[str, Any]:
    item_number = _gid_number(inventory_item_id)
    location_number = _gid_number(location_id)

    def quantities(info: GraphQLResolveInfo, names: list[str]) -> list[dict[str, Any]]:
        level = inventory.level(inventory_item_id, location_id)
        if level is None:
            return []
        return [
            {
                "id": f"gid://shopify/InventoryQuantity/{location_number}?inventory_item_id={item_number}&name={name}",
                "name": name,
                "quantity": inventory.shown_quantity(level, name) if name in _QUANTITY_NAMES_READABLE else 0,
                "updatedAt": level.updated_at,
            }
            for name in names
        ]

    return {
        "id": f"gid://shopify/InventoryLevel/{location_number}?inventory_item_id={item_number}",
        "item": lambda info: _item_object(inventory, inventory_item_id),
        "location": _location_object(location_id),
        "quantities": quantities,
    }


def _location_object(location_id: str) -> dict[str, Any]:
    return {"id": location_id, "name": f"Location {_gid_number(location_id)}"}


def _gid_number(gid: str) -> int:
    parsed = parse_gid(gid)
    return 0 if parsed is None else parsed[1]


__all__ = [
    "MAX_INPUT_ARRAY_SIZE",
    "AdminGraphQL",
    "GraphQLAnswer",
    "Outcome",
    "SchemaRules",
    "resolve_api_version",
    "schema_for",
]
