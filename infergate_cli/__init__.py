"""`infergate`: the operators' command line, over the admin API (and, to make the first
admin key, straight to MongoDB)."""
