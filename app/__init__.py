"""Traffic-police business supervision backend (交管业务综合监管平台)."""
