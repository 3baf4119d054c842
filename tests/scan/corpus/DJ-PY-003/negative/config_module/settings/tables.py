USERS = "users"
AUDIT = "audit_" + "log"
