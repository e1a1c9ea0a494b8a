-- data_quality: one row per reading and check that flagged it, with the reason and the values
-- involved. Today's checks are the register's decreases (fct_reading.register_event): a rollover or
-- reset is counted (energy known) and noted; a correction leaves its interval's energy unknown.
-- Another check adds rows with its own check_name (a UNION ALL below), same columns.
with readings as (
    select * from energy_analytics.fct_reading
    where reading_at >= @window_start and reading_at < @window_end
),

register_decreases as (
    select
        device_id,
        reading_at,
        concat('register_', register_event) as check_name,
        case when register_event = 'correction' then 'warning' else 'info' end as severity,
        case register_event
            when 'rollover' then 'register wrapped at its maximum: energy counted modulo the maximum'
            when 'reset' then 'register dropped to near zero: meter restarted, energy = the new value'
            else 'register went backwards: a correction, interval energy unknown'
        end as reason,
        register_wh as value,
        previous_register_wh as previous_value,
        previous_reading_at,
        energy_wh
    from readings
    where register_event is not null
)

select * from register_decreases
