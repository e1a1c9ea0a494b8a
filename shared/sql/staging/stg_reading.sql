-- stg_reading: the only reader of raw.reading. Renames (the register gets its unit), casts.
with source as (
    select * from raw.reading
),

renamed as (
    select
        -- ids
        cast(device_id as string) as device_id,

        -- timestamps
        cast(`timestamp` as timestamp) as reading_at,
        cast(received_at as timestamp) as received_at,

        -- measures
        cast(power_w as float64) as power_w,
        cast(energy_wh as float64) as register_wh,
        cast(voltage as float64) as voltage,
        cast(temp_c as float64) as temp_c,
        cast(occupancy as bool) as occupancy,

        -- connector
        cast(_fivetran_synced as timestamp) as synced_at,
        coalesce(_fivetran_deleted, false) as is_deleted
    from source
)

select * from renamed
