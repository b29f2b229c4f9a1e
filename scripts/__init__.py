"""Maintenance scripts run by hand (not shipped): they regenerate data files that wgbot ships."""
