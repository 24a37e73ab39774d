"""tweepee: peewee's Flask "twitter" example, made multi-tenant with relay_peewee."""
