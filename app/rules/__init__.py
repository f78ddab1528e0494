"""Rules (预警规则): rule specifications, filters and the rule-file loader."""
