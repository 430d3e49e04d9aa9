"""Everything that reaches a host over ssh: the ssh/rsync transport (`ssh`), what is done on such
a host (`hosts`), several commands in one round trip (`batch`), and what is shipped to it: the
code (`codesync`), this project's wheel (`packaging`) and the setup bundle (`bundle`)."""
