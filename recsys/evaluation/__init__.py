"""Offline evaluation: metrics in each task's sample space, baselines and readable reports."""
