"""One workspace-membership query per request instead of one per record and metadata key.

For an annotator, the records search handler checks `User.is_member(workspace)` for every metadata key of every
record it returns (10 records x 3 keys = 30 identical queries, ~20 ms at each listing). The answer is remembered on
the `User` object, which the authentication dependency loads anew for every request, so a membership change is
seen by the next request, as before.
"""

from __future__ import annotations

from uuid import UUID

from argilla_server.models import User

_MEMO = "_annotation_server_memberships"


def install() -> None:
    stock = User.is_member

    async def is_member(self: User, workspace_id: UUID) -> bool:
        memo = self.__dict__.get(_MEMO)
        if memo is None:
            memo = {}
            object.__setattr__(self, _MEMO, memo)
        if workspace_id not in memo:
            memo[workspace_id] = await stock(self, workspace_id)
        return memo[workspace_id]

    User.is_member = is_member
