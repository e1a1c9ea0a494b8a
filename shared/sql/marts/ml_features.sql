-- ml_features: one row per device-hour with calendar, lags and trailing means. Lags are by clock
-- time (a RANGE frame on the hour), so a missing hour gives a NULL lag instead of a shifted one.
with hours as (
    select * from energy_analytics.hourly_consumption
    where
        hour >= timestamp_sub(@window_start, interval 168 hour)
        and hour < @window_end
),

with_history as (
    select
        *,
        max(energy_kwh) over (by_clock range between 3600 preceding and 3600 preceding) as lag_1h_kwh,
        max(energy_kwh) over (by_clock range between 86400 preceding and 86400 preceding) as lag_24h_kwh,
        max(energy_kwh) over (by_clock range between 604800 preceding and 604800 preceding)
            as lag_168h_kwh,
        avg(energy_kwh) over (by_clock range between 86400 preceding and 3600 preceding)
            as rolling_24h_mean_kwh,
        avg(energy_kwh) over (by_clock range between 604800 preceding and 3600 preceding)
            as rolling_168h_mean_kwh,
        avg(avg_temp_c) over (by_clock range between 86400 preceding and 3600 preceding)
            as rolling_24h_mean_temp_c
    from hours
    window by_clock as (partition by device_id order by unix_seconds(hour))
),

with_calendar as (
    select
        -- ids
        device_id,
        site_id,
        hour,

        -- calendar (UTC); day_of_week counts from Sunday = 1 like GoogleSQL's DAYOFWEEK
        extract(hour from hour) as hour_of_day,
        mod(date_diff(date(hour), date '1970-01-04', day), 7) + 1 as day_of_week,
        mod(date_diff(date(hour), date '1970-01-04', day), 7) in (0, 6) as is_weekend,
        extract(month from hour) as month,

        -- the target and same-hour measures
        energy_kwh,
        avg_power_w,
        avg_temp_c,
        max_temp_c,
        occupancy_share,
        coverage,

        -- history
        lag_1h_kwh,
        lag_24h_kwh,
        lag_168h_kwh,
        rolling_24h_mean_kwh,
        rolling_168h_mean_kwh,
        rolling_24h_mean_temp_c
    from with_history
),

in_window as (
    select * from with_calendar
    where hour >= @window_start and hour < @window_end
)

select * from in_window
