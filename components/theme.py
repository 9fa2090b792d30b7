"""Design constants: colours live here, not in components."""
GOLD = '#d4a72c'
DARK_ARC = '#2b2f3a'
WARNING = '#f59e0b'
CRITICAL = '#ef4444'
OK = '#22c55e'
TEXT_MUTED = '#9ca3af'
SOFT_PERCENT = 80
CRITICAL_PERCENT = 95
PALETTE = ['#d4a72c', '#60a5fa', '#34d399', '#f472b6', '#a78bfa', '#f97316', '#94a3b8']
