"""Host facilities: names and paths, cgroups, CNI, the instance file."""
