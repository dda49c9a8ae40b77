"""Loading and refreshing what classification and identification match: category lists and
their compiled cache, illegal lists, keyword libraries, UT1 imports, local policy entries, the
identity files (IP map, devices, user groups, htpasswd) and LDAP."""
