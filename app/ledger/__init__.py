"""The cost ledger: one immutable cost record per ended job, rollups, stats and savings."""
