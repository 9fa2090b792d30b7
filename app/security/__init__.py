"""Who may reach what: the start-up exposure rule, the request guard (hosts, cross-site writes, login) and who acts
from a page."""
