"""Who acts from a page. Every state change a page offers goes through a command with this actor, which checks its
role where the change is carried out, not in the widget."""
from __future__ import annotations

from services.core.access import Actor, Role

DASHBOARD = Actor('dashboard', Role.ADMIN)  # no dashboard login yet: whoever reaches the page is trusted


def page_actor() -> Actor:
    return DASHBOARD
