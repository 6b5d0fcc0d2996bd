"""The people of the demo CRM: a six-level role tree, the users in it, and who owns records.

Why a tree of this shape: sharing rules and the per-owner reports walk the
role hierarchy, so the demo needs a realistic one (a CEO, VPs, regional
directors, sales teams), and it grows with the number of users.
"""

from __future__ import annotations

import dataclasses

from psycopg2.extensions import cursor as PgCursor

from crmtasks.demo.vocabulary import REGIONS, STAFF_DOMAIN
from crmtasks.pg import load_sql


@dataclasses.dataclass(frozen=True)
class RoleTree:
    """Shape of the role hierarchy (6 levels) for a number of users.

    Role ids, in order: 1 CEO; 2-4 VPs (Sales, Marketing, Customer Success);
    one Regional Sales Director per region; Demand Generation and Customer
    Success directors; Marketing Specialist and Customer Success Manager
    (together the ``leadership`` roles); then per sales team a Sales Manager
    (under the region's director), an Account Executive role under it and a
    Sales Development Rep role under that.

    Parameters:
      regions(int): Regions with a sales director, 1 .. len(REGIONS).
      teams(int): Sales teams, spread round-robin over the regions.
    """

    regions: int
    teams: int

    @classmethod
    def for_users(cls, users: int) -> RoleTree:
        """About one sales team per 12 users, at least one.

        Parameters:
          users(int): The number of users (>= 10).
        """
        teams = max(1, users // 12)
        return cls(regions=min(len(REGIONS), teams), teams=teams)

    @property
    def leadership(self) -> int:
        """Roles above the sales teams (ids 1 .. leadership)."""
        return 8 + self.regions

    @property
    def roles(self) -> int:
        """Roles in the tree: the leadership and three per team."""
        return self.leadership + 3 * self.teams

    @property
    def managers_end(self) -> int:
        """The last role id (and user id) that manages someone: leadership and sales managers."""
        return self.leadership + self.teams


def people_parameters(tree: RoleTree) -> dict[str, object]:
    """The parameters of ``roles.sql`` and ``users.sql``: role ids by position in the tree.

    Parameters:
      tree(RoleTree): The tree for the number of users.
    """
    g, lead, t = tree.regions, tree.leadership, tree.teams
    return {
        "regions_used": g, "teams": t, "leadership": lead,
        "demand_gen_role": g + 5, "success_director_role": g + 6,
        "marketing_role": g + 7, "success_role": g + 8,
        "managers_end": tree.managers_end, "ae_base": lead + t, "sdr_base": lead + 2 * t,
        "region_names": list(REGIONS),
        "staff_domain": STAFF_DOMAIN,
    }


def owner_pool(cur: PgCursor, tree: RoleTree) -> list[int]:
    """Users who own records, front-line sellers first, so a skewed pick favours them.

    Everyone below the VPs, inactive users included (their records wait to be
    reassigned, as in a real CRM), in an order that depends on the seed
    (through the value functions). Read once the users exist.

    Parameters:
      cur(cursor): A cursor inside the demo data transaction.
      tree(RoleTree): The tree the users were generated for.
    """
    cur.execute(load_sql("crmtasks.demo", "owner_pool"), {"managers_end": tree.managers_end})
    return cur.fetchone()[0]
