"""Rules saved with values beyond the bounds: clamped and disabled, so they can be read

Before the API bounded a rule's integers (stocksync_common.bounds.Quantity), a rule
could be saved with, say, an action value of 2**70: the engine could not publish what
it computed and `GET /v1/rules` could not answer. Such a rule is clamped into the
bounds (0 to 1,000,000,000) and disabled, so that its merchant can read it, fix it or
delete it; its history records the change. Its history documents are clamped the same
way, so that they can be read too.

Revision ID: 0005_bound_rule_values
Revises: 0004_dead_letters
Create Date: 2026-11-30 05:00:00.000000

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005_bound_rule_values'
down_revision: Union[str, Sequence[str], None] = '0004_dead_letters'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

QUANTITY_MAX = 1_000_000_000


def _out_of_bounds(document: str, key: str) -> str:
    return (
        f"(jsonb_typeof({document}->'{key}') = 'number' "
        f"AND (({document}->>'{key}')::numeric NOT BETWEEN 0 AND {QUANTITY_MAX} "
        f"OR ({document}->>'{key}')::numeric <> trunc(({document}->>'{key}')::numeric)))"
    )


def _clamped(document: str, key: str) -> str:
    value = f"trunc(LEAST(GREATEST(({document}->>'{key}')::numeric, 0), {QUANTITY_MAX}))::bigint"
    return f"(CASE WHEN {_out_of_bounds(document, key)} THEN jsonb_set({document}, '{{{key}}}', to_jsonb({value})) ELSE {document} END)"


def _clamp_all(document: str) -> str:
    # condition.value, condition.upper, action.value (absent keys are left absent).
    return _clamped(_clamped(document, "value"), "upper")


def upgrade() -> None:
    """Upgrade schema."""
    bad = " OR ".join(
        _out_of_bounds(document, key) for document, key in (("condition", "value"), ("condition", "upper"), ("action", "value"))
    )
    op.execute(
        f"""
        WITH repaired AS (
            UPDATE rule_engine.rules
               SET enabled = false,
                   condition = {_clamp_all('condition')},
                   action = {_clamp_all('action')},
                   updated_at = now()
             WHERE {bad}
            RETURNING rule_id, merchant_id
        )
        INSERT INTO rule_engine.rule_changes (rule_id, merchant_id, kind, changed_by, before, after, channel_quantities_changed)
        SELECT rule_id, merchant_id, 'disabled', 'migration:0005_bound_rule_values', NULL, NULL, 0 FROM repaired
        """
    )
    for column in ("before", "after"):
        for part in ("condition", "action"):
            document = f"{column}->'{part}'"
            op.execute(
                f"""
                UPDATE rule_engine.rule_changes
                   SET {column} = jsonb_set({column}, '{{{part}}}', {_clamp_all(document)})
                 WHERE jsonb_typeof({document}) = 'object'
                   AND ({_out_of_bounds(document, 'value')} OR {_out_of_bounds(document, 'upper')})
                """
            )


def downgrade() -> None:
    """Downgrade schema: nothing to undo (the values beyond the bounds are not kept)."""
