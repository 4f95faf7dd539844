"""Projects: their lifecycle (transitions as data), members and tiers."""
