-- hourly_consumption: device x UTC hour. A reading's interval energy counts in the hour its
-- timestamp falls in; coverage compares the readings seen with those the device's interval promises.
with readings as (
    select * from energy_analytics.fct_reading
    where hour >= @window_start and hour < @window_end
),

devices as (
    select * from energy_analytics.dim_device
),

hourly as (
    select
        device_id,
        hour,
        avg(power_w) as avg_power_w,
        max(power_w) as max_power_w,
        sum(energy_wh) / 1000 as energy_kwh,
        avg(temp_c) as avg_temp_c,
        max(temp_c) as max_temp_c,
        avg(case when occupancy then 1.0 when not occupancy then 0.0 end) as occupancy_share,
        count(*) as reading_count
    from readings
    group by device_id, hour
),

with_coverage as (
    select
        hourly.device_id,
        devices.site_id,
        hourly.hour,
        hourly.avg_power_w,
        hourly.max_power_w,
        hourly.energy_kwh,
        hourly.avg_temp_c,
        hourly.max_temp_c,
        hourly.occupancy_share,
        hourly.reading_count,
        least(1.0, safe_divide(hourly.reading_count * devices.interval_minutes, 60)) as coverage
    from hourly
    inner join devices
        on hourly.device_id = devices.device_id
)

select * from with_coverage
