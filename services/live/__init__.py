"""Live changes: the in-process hub, the typed topics it carries, and the bridge between instances."""
