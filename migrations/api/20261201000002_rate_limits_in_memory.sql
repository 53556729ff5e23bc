-- Rate limits are counted in each api replica's memory and shared over NATS
-- (services/api/src/rate_limit.rs): no request writes a counter row any more.
DROP TABLE IF EXISTS api.rate_limits;
