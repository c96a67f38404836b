"""AGLOP: joint choice of the partition point and the DISC setting, re-planned as the link changes."""
