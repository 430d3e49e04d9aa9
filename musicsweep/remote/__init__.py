"""Running commands on other hosts: ssh/rsync (`ssh`) and shipping the project's code (`codesync`)."""
