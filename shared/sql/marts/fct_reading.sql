-- fct_reading: one row per device and reading in [@window_start, @window_end), deduplicated, with
-- connector deletes and decommissioned devices removed and the interval energy derived from the
-- cumulative register. The previous reading is looked up at most 24 h back: a longer gap leaves the
-- interval energy unknown (NULL) rather than lumping days of energy into one hour.
with readings as (
    select * from staging.stg_reading
    where
        reading_at >= timestamp_sub(@window_start, interval 24 hour)
        and reading_at < @window_end
),

devices as (
    select * from staging.stg_device
),

live_readings as (
    select readings.*
    from readings
    inner join devices
        on readings.device_id = devices.device_id
    where not readings.is_deleted and not devices.is_deleted
),

deduplicated as (
    select * from live_readings
    qualify row_number() over (
        partition by device_id, reading_at
        order by synced_at desc, received_at desc
    ) = 1
),

with_previous as (
    select
        *,
        lag(reading_at) over by_time as previous_reading_at,
        lag(register_wh) over by_time as previous_register_wh
    from deduplicated
    window by_time as (partition by device_id order by reading_at)
),

interval_energy as (
    select
        -- ids
        device_id,

        -- timestamps
        reading_at,
        timestamp_trunc(reading_at, hour) as hour,

        -- measures
        power_w,
        register_wh,
        case
            when previous_reading_at is null then null
            when timestamp_diff(reading_at, previous_reading_at, second) > 86400 then null
            -- the register went backwards: the meter restarted from zero
            when register_wh < previous_register_wh then register_wh
            else register_wh - previous_register_wh
        end as energy_wh,
        timestamp_diff(reading_at, previous_reading_at, second) as interval_s,
        coalesce(register_wh < previous_register_wh, false) as is_register_reset,
        voltage,
        temp_c,
        occupancy,

        -- connector
        received_at,
        synced_at
    from with_previous
),

in_window as (
    select * from interval_energy
    where reading_at >= @window_start and reading_at < @window_end
)

select * from in_window
