-- The app database, run once by zt-runtime as the superuser over the unix socket (idempotent).
-- app_owner owns the database and every object in it; nobody logs in as app_owner.
-- OpenBao's dynamic users are created IN ROLE app_owner and dropped when their lease ends.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_owner') THEN
    CREATE ROLE app_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bao_admin') THEN
    CREATE ROLE bao_admin LOGIN CREATEROLE;
  END IF;
END $$;
GRANT app_owner TO bao_admin WITH ADMIN OPTION;
