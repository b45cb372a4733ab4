from feast import Entity, ValueType

image = Entity(name="image", join_keys=["image_id"], value_type=ValueType.STRING,
               description="A catalog image, keyed by the catalog's identifier (UUID).")

domain = Entity(name="domain", join_keys=["domain"], value_type=ValueType.STRING,
                description="A registered domain (eTLD+1) that hosts catalog landing pages.")
